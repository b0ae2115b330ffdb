from avkd.cli import main

raise SystemExit(main())
