from xtask_core.cli import main

raise SystemExit(main())
