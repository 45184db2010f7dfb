from latentsweep.cli import main

raise SystemExit(main())
