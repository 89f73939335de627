"""Map-making, between the physics/SPH layer and the stages.

- :mod:`.maps`: the four (or five) channels of one sightline from a halo's particles;
- :mod:`.instrument`: beam, noise and masks on the condition maps;
- :mod:`.plan`: the sightline plan (which halo, rotation and axis each image is);
- :mod:`.generate`: the unit of work of the generators, one chunk of the image store
  (:func:`~cmpipe.mapmaking.generate.write_chunk`).

Functions here take plain values and config sections (:class:`~cmpipe.mapmaking.maps.MapSettings`),
never the whole :class:`cmpipe.config.Config`: :mod:`cmpipe.stages.generate` converts it.
"""
