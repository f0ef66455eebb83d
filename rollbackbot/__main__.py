from rollbackbot.cli import main

raise SystemExit(main())
