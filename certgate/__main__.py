from certgate.cli import main

raise SystemExit(main())
