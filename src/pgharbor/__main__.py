import sys

from pgharbor.entry import main

sys.exit(main())
