"""``ray job submit`` entrypoint of ``cmpipe train``: the Ray Train workers run on the job's cluster.

    RAY_AUTH_MODE=token ray job submit --working-dir . -- \
        python jobs/train.py --config paper --store /abs/path/images.zarr --run /abs/path/run --workers 8

Use absolute ``--store`` and ``--run`` paths every node sees (the job runs inside the unpacked
working directory; rank 0 writes the run directory). The driver finds the cluster through
``RAY_ADDRESS``, set by Ray.
"""

import sys

from cmpipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
