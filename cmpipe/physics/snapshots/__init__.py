"""Readers of simulation snapshots and their halo catalogs (``cmpipe extract-halos``).

Each format is one small module behind the :class:`~cmpipe.physics.snapshots.base.SnapshotReader`
protocol (:mod:`.base`): ``swift`` (SWIFT through swiftsimio, SOAP or VELOCIraptor catalogs) and
``gadget`` (Gadget-4 / AREPO HDF5, IllustrisTNG-style, FoF/SUBFIND catalogs). A reader converts
the snapshot's own units and smoothing-length convention to cmpipe's internal ones
(:mod:`cmpipe.physics.halo`) once; the extraction (:mod:`cmpipe.physics.snapshots.extract`)
cuts halos out and writes them in the one-halo HDF5 layout (:mod:`cmpipe.physics.hdf5io`).
"""
