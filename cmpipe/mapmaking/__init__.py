"""Map-making, between the physics/SPH layer and the stages.

- :mod:`.maps`: the four (or five) channels of one sightline from a halo's particles;
- :mod:`.instrument`: beam, noise and masks on the condition maps;
- :mod:`.plan`: the sightline plan (which halo, rotation and axis each image is);
- :mod:`.generate`: the serial generator over the image store's chunks.
"""
