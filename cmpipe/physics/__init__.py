"""Physics of the inputs: halo interface, units, the HDF5 reader for real halos, mocks.

Submodules are imported explicitly (``from cmpipe.physics.hdf5io import read_halo_hdf5``);
nothing is re-exported here so that ``import cmpipe.physics`` stays cheap (no h5py, no astropy).
"""
