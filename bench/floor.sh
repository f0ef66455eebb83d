#!/usr/bin/env bash
# The floor for the reaction benchmark: the git work of one rollback, with the git CLI only.
#
#   bash bench/floor.sh GIT_DIR APP ALLOWED_SIGNERS [BRANCH]
#
# GIT_DIR is a bare clone whose "origin" is the GitOps remote. Steps, as rollbackbot does them:
# fetch the branch and tags, list the app's release tags, find the current release (the newest
# tag whose apps/APP tree equals the branch head's) and the one before it, verify its ssh
# signature, restore apps/APP to it in a temporary index, commit on the head, push. No policy,
# no store, no evidence, no quarantine file: the least any implementation has to do.
# Prints "step NAME MICROSECONDS" per step, then "commit ID".
set -euo pipefail
export LC_ALL=C  # EPOCHREALTIME with a "." decimal point

# "step NAME MICROSECONDS" lines on stdout give the harness a per-step breakdown.
last=${EPOCHREALTIME/./}
step() {
    local now=${EPOCHREALTIME/./}
    echo "step $1 $((now - last))"
    last=$now
}

git_dir=$1 app=$2 signers=$3 branch=${4:-main}
path="apps/$app"
tracking="refs/remotes/origin/$branch"
export GIT_DIR=$git_dir GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=floor GIT_AUTHOR_EMAIL=floor@localhost GIT_COMMITTER_NAME=floor GIT_COMMITTER_EMAIL=floor@localhost

git fetch --quiet --force --prune --no-write-fetch-head origin "+refs/heads/$branch:$tracking" "+refs/tags/*:refs/tags/*"
head=$(git rev-parse --verify "$tracking^{commit}")
step fetch

# Release tags, newest first by version; the tree of apps/APP at the head and at every tag in one call.
mapfile -t tags < <(git for-each-ref --sort=-v:refname --format='%(refname:strip=2)' "refs/tags/$app/")
mapfile -t trees < <(printf "%s:$path\n" "$head" "${tags[@]}" | git cat-file --batch-check='%(objectname)')
current="" target=""
for i in "${!tags[@]}"; do
    if [[ ${trees[i + 1]} == "${trees[0]}" && $((i + 1)) -lt ${#tags[@]} ]]; then
        current=${tags[i]} target=${tags[i + 1]}
        break
    fi
done
if [[ -z $target ]]; then
    echo "floor: no release before the current one of $app" >&2
    exit 1
fi
step list-tags
git -c gpg.format=ssh -c gpg.ssh.allowedSignersFile="$signers" verify-tag "$target" 2>/dev/null
step verify-tag

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export GIT_INDEX_FILE="$scratch/index"
git read-tree "$head"
git rm --cached --quiet -r --ignore-unmatch -- "$path"
git read-tree -i --prefix="$path/" "$target^{commit}:$path"
tree=$(git write-tree)
commit=$(git commit-tree "$tree" -p "$head" -m "rollback($app): $current -> $target")
step commit
git push --quiet origin "$commit:refs/heads/$branch"
step push
echo "commit $commit"
