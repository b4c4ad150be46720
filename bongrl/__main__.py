from bongrl.cli import main

raise SystemExit(main())
