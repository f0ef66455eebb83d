"""The GitOps repository: plumbing over the git CLI (``plumbing``) and the repository port (``repo``)."""
