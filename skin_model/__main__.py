import sys

from skin_model.serving.cli import main

sys.exit(main())
