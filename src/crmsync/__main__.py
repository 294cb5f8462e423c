from crmsync.cli.main import main

raise SystemExit(main())
