from federation.cli import main

raise SystemExit(main())
