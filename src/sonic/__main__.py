from sonic.cli import main

raise SystemExit(main())
