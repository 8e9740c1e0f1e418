"""`ray job submit --working-dir . -- python -m jobs.instruct --config CONFIG`"""

import sys

from jobs._entry import main

if __name__ == "__main__":
    sys.exit(main("instruct"))
