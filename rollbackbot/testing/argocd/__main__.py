import sys

from rollbackbot.testing.argocd.server import main

sys.exit(main())
