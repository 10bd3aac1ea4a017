from fdpkit.cli import main

raise SystemExit(main())
