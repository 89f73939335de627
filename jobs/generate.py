"""``ray job submit`` entrypoint of ``cmpipe generate``: the chunk tasks run on the job's cluster.

    RAY_AUTH_MODE=token ray job submit --working-dir . -- \
        python jobs/generate.py --config paper --store /abs/path/images.zarr

Use an absolute ``--store`` (or a path every node sees): the job runs inside the unpacked
working directory. The job's driver finds the cluster through ``RAY_ADDRESS``, set by Ray.
"""

import sys

from cmpipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
