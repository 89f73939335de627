"""matplotlib figures: arrays or tables in, a ``Figure`` out; never ``plt.show()``."""
