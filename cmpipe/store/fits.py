"""FITS images in and out: cmpipe maps with a physical-length WCS, and external maps checked and
put on a model's grid (no Ray, no torch).

Every path may be an object-store URL (:mod:`cmpipe.store.location`): a file is read whole
into memory and parsed there, and written whole (serialised in memory, then one PUT; on disk a
temporary file renamed into place).

The FITS contract
-----------------
A map ``data[iy, ix]`` (cmpipe's ``origin="lower"`` grid centred on the halo, see
:mod:`cmpipe.mapmaking.maps`) is written with FITS axis 1 = ``x`` (``ix``) and axis 2 = ``y`` (``iy``), so
FITS pixel ``(1, 1)`` is ``data[0, 0]``. Its WCS is linear, in physical Mpc, with no celestial
axes:

==========================  ===================================================================
keyword                     value
==========================  ===================================================================
``CTYPE1``, ``CTYPE2``      ``'X'``, ``'Y'`` (linear)
``CUNIT1``, ``CUNIT2``      ``'Mpc'``
``CDELT1``, ``CDELT2``      the pixel size [Mpc]
``CRPIX1``, ``CRPIX2``      ``(n + 1) / 2`` (the map centre: pixel centres sit at
                            ``(i + 0.5) p - n p / 2``, so the halo centre is at (0, 0) Mpc)
``CRVAL1``, ``CRVAL2``      ``0``
``BUNIT``                   the unit as a FITS string (``'erg s-1 cm-2 sr-1'``); left out
                            for dimensionless maps
``CHANNEL``                 the channel name (one-channel HDUs)
``CHNAMEn``, ``CHUNITn``    name and unit of plane ``n`` (1-based) of a ``(C, H, W)`` or
                            ``(S, C, H, W)`` cube (axis 3 is the channel)
``CMPIPE``                  the cmpipe version that wrote the file
``REDSHIFT``, ``ARCMINPX``  the redshift and (given by the caller) the pixel's angular size
                            [arcmin] from the angular diameter distance
==========================  ===================================================================

Reading (:func:`read_map_fits`) understands ``CDELTi`` (with or without ``PCi_j``) and
``CDi_j``, ``CUNITi`` in any length unit (``kpc`` is converted to Mpc), a mirrored axis
(flipped back so that ``x`` grows with ``ix``), and refuses, naming the file, a missing pixel
scale or length unit, non-square or rotated pixels, and unparseable units.
:func:`check_and_resample` converts a map's unit to a channel's and puts it on a model's grid.

Maps on the sky
---------------
A map whose WCS has celestial axes (RA/Dec, Galactic, ecliptic; TAN, SIN, CAR, ... any
projection and rotation ``astropy.wcs`` reads) is a :class:`SkyImage`
(:func:`read_input_fits` tells the two kinds apart). :func:`sky_grid_wcs` builds a model grid
on the sky: a TAN projection at the cluster, north up and east left, its pixel the model pixel
[Mpc] over the angular diameter distance (given by the caller: this module does no physics).
:func:`reproject_to_grid` carries the model pixels' corners to the input's pixels through both
WCSs (with a frame transformation if needed) and takes each model pixel as the exact
area-weighted mean of the input over its footprint (:func:`polygon_resample`, polygon
clipping in the input's pixel plane): y and S_X are intensities (a line integral per
sightline; a brightness per steradian), so surface brightness is kept pixel by pixel and the
flux of the field is conserved. This is what ``reproject.reproject_exact`` computes (it clips
on the sphere; the two agree to about 1e-6 on a rotated SIN map), without its dependencies
(dask, dask-image, pyavm). Outputs on such a grid carry :func:`sky_wcs_cards`: the celestial
WCS, and the model grid in Mpc as the alternate WCS ``P``.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmpipe.store.location import AnyPath, as_path, is_remote, write_bytes_atomic

__all__ = [
    "FITS_UNITS",
    "FitsError",
    "MapImage",
    "SkyImage",
    "area_resample",
    "check_and_resample",
    "fits_unit",
    "header_redshift",
    "parse_unit",
    "polygon_resample",
    "read_fits_header",
    "read_input_fits",
    "read_map_fits",
    "reproject_to_grid",
    "sky_grid_wcs",
    "sky_wcs_cards",
    "write_map_fits",
]

#: FITS ``BUNIT`` strings of cmpipe's channels ('' = dimensionless).
FITS_UNITS: dict[str, str] = {"sz_y": "", "xray_sb": "erg s-1 cm-2 sr-1", "gas_sigma": "", "dm_sigma": "",
                              "kappa": ""}

# Relative tolerance under which two pixel scales count as equal, and pixel tolerance of the
# field-of-view and alignment checks.
_SAME_SCALE_RTOL = 1e-9
_PIX_TOL = 1e-6
# How far below 1 the ratio model pixel / image pixel may be (a slight upsampling) [fraction].
_UPSAMPLE_TOLERANCE = 0.01
# Fraction of a model pixel that may fall outside a sky map (a field that just fits, with
# angular diameter distances that differ in the 5th digit between codes); the pixel is then the
# mean over its covered part.
_SKY_COVERAGE_TOL = 1e-3


class FitsError(ValueError):
    """A FITS map that cannot be used as asked (the message names the file and the reason)."""


@dataclass(frozen=True)
class MapImage:
    """One 2-d map read from a FITS file.

    Attributes
    ----------
    data : ndarray, shape (H, W)
        float64, indexed ``[iy, ix]`` with ``origin="lower"`` (x and y grow with the indices).
    pixel_mpc : float
        Pixel side [physical Mpc].
    unit : str
        ``BUNIT`` as written ('' if absent: dimensionless).
    channel : str or None
        ``CHANNEL`` (or the plane's ``CHNAMEn``), if any.
    header : astropy.io.fits.Header
        The HDU's header.
    path : str
        The file.
    centre_pix : (float, float)
        0-based ``(x, y)`` pixel position of world (0, 0) Mpc, the halo centre (from ``CRPIX``
        and ``CRVAL``; after any flip).
    notes : tuple of str
        What the reader did to the data (flips).
    """

    data: np.ndarray
    pixel_mpc: float
    unit: str
    channel: str | None
    header: Any
    path: str
    centre_pix: tuple[float, float]
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------- units


def parse_unit(text: str, *, path: str | os.PathLike[str] | None = None, what: str = "unit") -> Any:
    """An ``astropy.units`` unit from a FITS or cmpipe unit string.

    ``''`` and strings starting with ``dimensionless`` (cmpipe's descriptions, e.g.
    ``'dimensionless (Compton-y)'``) are dimensionless; ``'erg s^-1 cm^-2 sr^-1'``,
    ``'erg s-1 cm-2 sr-1'``, ``'erg / (s cm2 sr)'`` and ``'erg/s/cm2/sr'`` parse alike.

    Raises
    ------
    FitsError
        If the string is not a unit (naming ``path``).
    """
    from astropy import units as u

    s = str(text).strip()
    if s == "" or s.lower().startswith("dimensionless"):
        return u.dimensionless_unscaled
    try:
        with warnings.catch_warnings():
            # Several slashes ('erg/s/cm2/sr') are common in real headers and parse unambiguously
            # left to right; astropy warns that the FITS standard discourages them.
            warnings.simplefilter("ignore", u.UnitsWarning)
            return u.Unit(s, parse_strict="raise")
    except ValueError as exc:
        where = f"{path}: " if path is not None else ""
        raise FitsError(f"{where}{what} {s!r} is not a unit astropy can parse ({exc})") from None


def fits_unit(unit: str | Any) -> str:
    """The FITS ``BUNIT`` string of a unit ('' when dimensionless).

    cmpipe's descriptive strings (:data:`cmpipe.mapmaking.maps.CHANNEL_UNITS`) are accepted; the X-ray unit
    is written ``'erg s-1 cm-2 sr-1'``.
    """
    from astropy import units as u

    parsed = parse_unit(unit) if isinstance(unit, str) else u.Unit(unit)
    if parsed == u.dimensionless_unscaled:
        return ""
    if parsed == u.Unit("erg s-1 cm-2 sr-1"):
        return "erg s-1 cm-2 sr-1"
    with warnings.catch_warnings():
        # 'erg' and some others are deprecated in the FITS standard but still the clearest spelling.
        warnings.simplefilter("ignore", u.UnitsWarning)
        return parsed.to_string("fits")


# ------------------------------------------------------------------------------------- writing


def _wcs_cards(shape: Sequence[int], pixel_mpc: float) -> list[tuple[str, Any, str]]:
    h, w = int(shape[-2]), int(shape[-1])
    return [
        ("CTYPE1", "X", "linear map x, halo centre at 0"),
        ("CTYPE2", "Y", "linear map y, halo centre at 0"),
        ("CUNIT1", "Mpc", "physical Mpc"),
        ("CUNIT2", "Mpc", "physical Mpc"),
        ("CRPIX1", (w + 1) / 2.0, "map centre"),
        ("CRPIX2", (h + 1) / 2.0, "map centre"),
        ("CRVAL1", 0.0, "[Mpc] halo centre"),
        ("CRVAL2", 0.0, "[Mpc] halo centre"),
        ("CDELT1", float(pixel_mpc), "[Mpc] pixel size"),
        ("CDELT2", float(pixel_mpc), "[Mpc] pixel size"),
    ]


def _image_header(
    shape: Sequence[int], pixel_mpc: float, channel_names: Sequence[str], units: Sequence[str],
    redshift: float | None, arcmin_per_pixel: float | None, extra_header: Mapping[str, Any] | None,
    wcs_cards: Sequence[tuple[str, Any, str]] | None = None, bunit: str | None = None,
) -> Any:
    from astropy.io import fits

    from cmpipe import __version__

    header = fits.Header()
    for key, value, comment in (_wcs_cards(shape, pixel_mpc) if wcs_cards is None else wcs_cards):
        header[key] = (value, comment)
    fits_units = [fits_unit(x) for x in units]
    if len(shape) == 2:
        if len(channel_names) != 1 or len(fits_units) != 1:
            raise ValueError(f"a 2-d map needs one channel name and one unit; got {channel_names}, {units}")
    else:
        n_chan = int(shape[-3])
        if len(channel_names) != n_chan or len(fits_units) != n_chan:
            raise ValueError(f"a map of shape {tuple(shape)} needs {n_chan} channel names and units; "
                             f"got {list(channel_names)}, {list(units)}")
        header["CTYPE3"] = ("CHANNEL", "plane n is channel CHNAMEn")
        for i, (name, unit) in enumerate(zip(channel_names, fits_units), start=1):
            header[f"CHNAME{i}"] = (str(name), f"channel of plane {i}")
            header[f"CHUNIT{i}"] = (unit, f"unit of plane {i} ('' dimensionless)")
        if len(shape) == 4:
            header["CTYPE4"] = ("SAMPLE", "posterior sample index")
    if bunit is not None:
        header["BUNIT"] = (bunit, "unit of the data ('' dimensionless)")
    elif len(set(fits_units)) == 1 and fits_units[0]:
        header["BUNIT"] = (fits_units[0], "unit of the data")
    if len(channel_names) == 1:
        header["CHANNEL"] = (str(channel_names[0]), "cmpipe channel")
    header["CMPIPE"] = (__version__, "cmpipe version that wrote this file")
    if redshift is not None:
        header["REDSHIFT"] = (float(redshift), "redshift of the halo")
        if arcmin_per_pixel is not None:
            header["ARCMINPX"] = (float(arcmin_per_pixel), "[arcmin] pixel size, angular diameter distance")
    for key, value in (extra_header or {}).items():
        header[key] = value
    return header


def _as_float(data: np.ndarray) -> np.ndarray:
    data = np.asarray(data)
    if data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float64)
    return np.ascontiguousarray(data)


def write_map_fits(
    path: str | os.PathLike[str],
    data: np.ndarray | None,
    *,
    pixel_mpc: float,
    channel_names: Sequence[str] | str,
    units: Sequence[str] | str,
    redshift: float | None = None,
    arcmin_per_pixel: float | None = None,
    extra_header: Mapping[str, Any] | None = None,
    extensions: Mapping[str, np.ndarray] | None = None,
    overwrite: bool = False,
    wcs_cards: Sequence[tuple[str, Any, str]] | None = None,
    bunit: str | None = None,
) -> AnyPath:
    """Write maps with a physical-length WCS (see the module docstring for the keywords), or
    with the WCS of ``wcs_cards`` (a celestial one: :func:`sky_wcs_cards`).

    Parameters
    ----------
    path : str, path-like or URL
        The FITS file, written whole: serialised in memory, then a temporary file renamed into
        place on disk, or a single PUT on an object store (readers see no partial file).
    data : ndarray, shape (H, W) or (C, H, W), or None
        The primary HDU's maps, ``[.., iy, ix]``; float32 and float64 are kept, other dtypes
        become float64. None: an empty primary HDU (``extensions`` holds the maps).
    pixel_mpc : float
        Pixel side [physical Mpc].
    channel_names, units : str or sequence of str
        One per channel (per plane of axis -3 for cubes); units as FITS strings ('' for
        dimensionless) or cmpipe's descriptions (:data:`cmpipe.mapmaking.maps.CHANNEL_UNITS`).
    redshift : float, optional
        Written as ``REDSHIFT``.
    arcmin_per_pixel : float, optional
        Written as ``ARCMINPX`` with ``redshift``: the pixel's angular side [arcmin]
        (:func:`cmpipe.physics.cosmology.pixel_arcmin`; none at redshift 0).
    extra_header : mapping, optional
        More cards for every HDU with data (and the primary).
    extensions : mapping of str to ndarray, optional
        One ``ImageHDU`` per entry, ``EXTNAME`` the key; each of shape (H, W), (C, H, W) or
        (S, C, H, W) with the same channels, units and WCS.
    overwrite : bool
    wcs_cards : sequence of (key, value, comment), optional
        The WCS cards of the image axes, instead of the linear Mpc ones (a sky grid's:
        :func:`sky_wcs_cards`).
    bunit : str, optional
        ``BUNIT`` of every HDU with data, written even when '' (dimensionless: astropy's
        ``CCDData.read`` needs the keyword); default: the channels' common unit, left out
        when dimensionless.

    Returns
    -------
    pathlib.Path or upath.UPath
    """
    from astropy.io import fits

    from cmpipe import __version__

    if data is None and not extensions:
        raise ValueError("write_map_fits needs data or extensions")
    names = [channel_names] if isinstance(channel_names, str) else list(channel_names)
    unit_list = [units] if isinstance(units, str) else list(units)
    if not pixel_mpc > 0:
        raise ValueError(f"pixel_mpc must be > 0; got {pixel_mpc}")

    def header_for(array: np.ndarray) -> Any:
        if array.ndim not in (2, 3, 4):
            raise ValueError(f"maps must be (H, W), (C, H, W) or (S, C, H, W); got {array.shape}")
        return _image_header(array.shape, pixel_mpc, names, unit_list, redshift, arcmin_per_pixel, extra_header,
                             wcs_cards, bunit)

    if data is not None:
        arr = _as_float(data)
        primary = fits.PrimaryHDU(arr, header=header_for(arr))
    else:
        primary = fits.PrimaryHDU()
        primary.header["CMPIPE"] = (__version__, "cmpipe version that wrote this file")
        if redshift is not None:
            primary.header["REDSHIFT"] = (float(redshift), "redshift of the halo")
        for key, value in (extra_header or {}).items():
            primary.header[key] = value
    hdus = [primary]
    for name, ext in (extensions or {}).items():
        arr = _as_float(ext)
        hdus.append(fits.ImageHDU(arr, header=header_for(arr), name=str(name).upper()))
    path = as_path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    if not is_remote(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return path


# ------------------------------------------------------------------------------------- reading


def _select_hdu(hdul: Any, hdu: int | str | None, path: str) -> Any:
    if hdu is None:
        for h in hdul:
            if h.is_image and h.data is not None:
                return h
        raise FitsError(f"{path}: no HDU holds image data")
    try:
        selected = hdul[hdu]
    except (KeyError, IndexError):
        names = [h.name for h in hdul]
        raise FitsError(f"{path}: no HDU {hdu!r}; it has {names}") from None
    if not selected.is_image or selected.data is None:
        raise FitsError(f"{path}: HDU {hdu!r} holds no image data")
    return selected


def _fits_source(path: str | os.PathLike[str] | AnyPath) -> Any:
    """What ``fits.open`` reads: the local path, or an object's bytes (read whole, in one GET).

    Raises
    ------
    OSError
        ``FileNotFoundError``, ``IsADirectoryError``, ``PermissionError``, naming the path.
    """
    path = as_path(path)
    if not is_remote(path):
        if not path.is_file():
            open(path, "rb").close()  # FileNotFoundError, IsADirectoryError, PermissionError: naming the path
        return path
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory (a prefix, not an object)", str(path))
    try:
        return io.BytesIO(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(2, "No such file or directory", str(path)) from None


def read_fits_header(path: str | os.PathLike[str] | AnyPath, hdu: int | str = 0) -> Any:
    """The header of one HDU of a FITS file (a local path or a URL), as ``fits.getheader``."""
    from astropy.io import fits

    return fits.getheader(_fits_source(path), hdu)


def _read_hdu(path: str | os.PathLike[str], hdu: int | str | None, name: str) -> tuple[Any, np.ndarray]:
    """Header and float64 data of the selected HDU; a file astropy cannot read (not FITS,
    truncated, corrupt) is a :class:`FitsError` naming it. A missing or unreadable path stays the
    ``OSError`` it is."""
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    source = _fits_source(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AstropyWarning)
        try:
            with fits.open(source, memmap=False) as hdul:
                selected = _select_hdu(hdul, hdu, name)
                header = selected.header.copy()
                data = np.array(selected.data, dtype=np.float64)
        except FitsError:
            raise
        except PermissionError:
            raise
        except (OSError, ValueError, TypeError, IndexError, KeyError, EOFError) as exc:
            said = [str(w.message) for w in caught if issubclass(w.category, AstropyWarning)]
            why = " ".join((said[0] if said else str(exc) or type(exc).__name__).split())
            raise FitsError(f"{name}: not a readable FITS file ({why})") from None
    for w in caught:  # a file read despite warnings: pass them on
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return header, data


def _plane(data: np.ndarray, header: Any, channel: str | int | None, path: str) -> tuple[np.ndarray, str | None, str]:
    """The 2-d plane of a map or cube (by channel name ``CHNAMEn`` or index along axis -3), its
    channel name and unit (``CHUNITn``, else ``BUNIT``, else '')."""
    bunit = str(header.get("BUNIT", ""))
    if data.ndim == 2:
        return data, header.get("CHANNEL"), bunit
    if data.ndim > 3 and all(n == 1 for n in data.shape[:-3]):
        data = data.reshape(data.shape[-3:])
    if data.ndim != 3:
        raise FitsError(f"{path}: data of shape {data.shape}; read_map_fits reads (H, W) or (C, H, W) maps")
    names = [header.get(f"CHNAME{i + 1}") for i in range(data.shape[0])]
    if channel is None and data.shape[0] == 1:
        channel = 0
    if channel is None:
        raise FitsError(f"{path}: a cube of {data.shape[0]} channels {names}; pass channel=")
    index = names.index(channel) if isinstance(channel, str) and channel in names else channel
    if isinstance(index, str) or not 0 <= int(index) < data.shape[0]:
        raise FitsError(f"{path}: no channel {channel!r}; it has {names}")
    index = int(index)
    return data[index], names[index], str(header.get(f"CHUNIT{index + 1}", bunit))


def read_map_fits(
    path: str | os.PathLike[str], *, hdu: int | str | None = None, channel: str | int | None = None
) -> MapImage:
    """One map of a FITS file with a physical-length WCS.

    Parameters
    ----------
    path : str, path-like or URL
    hdu : int or str, optional
        HDU index or ``EXTNAME``; default: the first HDU with image data.
    channel : str or int, optional
        The plane of a ``(C, H, W)`` cube (name from ``CHNAMEn`` or index).

    Returns
    -------
    MapImage
        ``data`` float64 ``[iy, ix]``; ``unit`` is ``CHUNITn`` of a cube's plane, else ``BUNIT``.

    Raises
    ------
    FitsError
        Naming the file: not a readable FITS file (not FITS, truncated, corrupt), no image,
        no pixel scale (``CDELTi`` or ``CDi_j``), no or non-length ``CUNITi``, non-square or
        rotated pixels, an unparseable unit.
    OSError
        A missing or unreadable path (``FileNotFoundError``, ``PermissionError``, ...).
    """
    from astropy import units as u
    from astropy.wcs import WCS

    name = str(path)
    header, data = _read_hdu(path, hdu, name)
    if data.ndim < 2:
        raise FitsError(f"{name}: data of shape {data.shape} is not a map")
    plane, chan, unit = _plane(data, header, channel, name)
    parse_unit(unit, path=name, what="BUNIT")

    has_cdelt = all(f"CDELT{i}" in header for i in (1, 2))
    has_cd = any(k.startswith("CD") and "_" in k for k in header.keys())
    if not (has_cdelt or has_cd):
        raise FitsError(f"{name}: no pixel scale (neither CDELT1/CDELT2 nor CDi_j); cannot place the map on a grid")
    cunits = [str(header.get(f"CUNIT{i}", "")).strip() for i in (1, 2)]
    if not all(cunits):
        raise FitsError(f"{name}: CUNIT1/CUNIT2 missing ({cunits}); the pixel scale needs a length unit (Mpc, kpc)")
    factors = []
    for cu in cunits:
        parsed = parse_unit(cu, path=name, what="CUNIT")
        if not parsed.is_equivalent(u.Mpc):
            raise FitsError(f"{name}: CUNIT {cu!r} is not a length; cmpipe needs physical lengths (Mpc or kpc) "
                            "(a sky map needs celestial axes, e.g. CTYPE1 = 'RA---TAN', CTYPE2 = 'DEC--TAN', and its redshift)")
        factors.append(parsed.to(u.Mpc))
    wcs = WCS(header, naxis=[1, 2])
    m = np.asarray(wcs.pixel_scale_matrix, dtype=np.float64) * np.asarray(factors)[:, None]
    diag = np.abs(np.diag(m))
    if not np.all(diag > 0):
        raise FitsError(f"{name}: zero pixel scale {np.diag(m)} Mpc")
    if abs(m[0, 1]) > 1e-9 * diag.max() or abs(m[1, 0]) > 1e-9 * diag.max():
        raise FitsError(f"{name}: the pixel grid is rotated (pixel scale matrix {m.tolist()} Mpc); "
                        "rotate it onto the axes first")
    if abs(diag[0] - diag[1]) > 1e-6 * diag.max():
        raise FitsError(f"{name}: non-square pixels ({diag[0]:g} x {diag[1]:g} Mpc); resample to square pixels first")
    pixel_mpc = float(diag[0])
    # 0-based pixel position of world (0, 0): crpix - 1 - crval / cdelt (per axis, in Mpc).
    crpix = np.asarray(wcs.wcs.crpix, dtype=np.float64)
    crval = np.asarray(wcs.wcs.crval, dtype=np.float64) * np.asarray(factors)
    centre = crpix - 1.0 - crval / np.diag(m)
    notes = []
    h, w = plane.shape
    if m[0, 0] < 0:
        plane, centre[0] = plane[:, ::-1], (w - 1) - centre[0]
        notes.append(f"{name}: x decreases with the pixel index (CDELT1 < 0); the map was mirrored back")
    if m[1, 1] < 0:
        plane, centre[1] = plane[::-1, :], (h - 1) - centre[1]
        notes.append(f"{name}: y decreases with the pixel index (CDELT2 < 0); the map was mirrored back")
    return MapImage(
        data=np.ascontiguousarray(plane), pixel_mpc=pixel_mpc, unit=str(unit), channel=chan, header=header,
        path=name, centre_pix=(float(centre[0]), float(centre[1])), notes=tuple(notes),
    )


# ---------------------------------------------------------------------------------- resampling


def _overlap_matrix(lo: float, width: float, n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` weights: the fraction of output pixel ``j`` (edges ``lo + j width`` to
    ``lo + (j + 1) width``, in input pixel units, input pixel ``i`` spans ``[i, i + 1]``) covered
    by input pixel ``i``. Rows sum to 1 when the output lies inside the input."""
    edges_out = lo + width * np.arange(n_out + 1)
    a = np.maximum(edges_out[:-1, None], np.arange(n_in)[None, :])
    b = np.minimum(edges_out[1:, None], np.arange(1, n_in + 1)[None, :])
    return np.clip(b - a, 0.0, None) / width


def area_resample(data: np.ndarray, x0: float, y0: float, ratio: float, n_out: int) -> np.ndarray:
    """Area-weighted (flux-conserving) resampling of a map onto a square grid.

    The input is piecewise constant on its pixels (pixel ``[iy, ix]`` covers ``[ix, ix + 1] x
    [iy, iy + 1]`` in input pixel units); output pixel ``[j, i]`` covers ``[x0 + i r, x0 + (i + 1)
    r] x [y0 + j r, y0 + (j + 1) r]`` and is the mean of the input over it. The mean surface
    brightness over the output field is preserved exactly (up to rounding), a constant map stays
    constant, and an integer ``r`` aligned on pixel edges gives block means.

    Parameters
    ----------
    data : ndarray, shape (H, W)
    x0, y0 : float
        Lower-left corner of the output grid [input pixels, edge coordinates].
    ratio : float
        Output pixel side over input pixel side ``r`` (> 0).
    n_out : int
        Output pixels per side.

    Returns
    -------
    ndarray, shape (n_out, n_out), float64
    """
    h, w = data.shape
    wy = _overlap_matrix(y0, ratio, n_out, h)
    wx = _overlap_matrix(x0, ratio, n_out, w)
    return wy @ np.asarray(data, dtype=np.float64) @ wx.T


def _in_unit(data: np.ndarray, unit: str, expected_unit: str | Any, channel: str, name: str,
             messages: list[str]) -> np.ndarray:
    """``data`` in ``unit`` converted to ``expected_unit`` (a message when a factor is applied).

    Raises
    ------
    FitsError
        If the units are not convertible (both named).
    """
    from astropy import units as u

    found = parse_unit(unit, path=name, what="BUNIT")
    expected = parse_unit(expected_unit, what="expected unit") if isinstance(expected_unit, str) else u.Unit(expected_unit)
    try:
        factor = float(found.to(expected))
    except u.UnitConversionError:
        raise FitsError(
            f"{name}: unit {unit!r} ({found}) of the {channel} map cannot be converted to the expected "
            f"{fits_unit(expected)!r} ({expected})"
        ) from None
    if abs(factor - 1.0) > 1e-12:
        data = data * factor
        messages.append(f"{name}: {channel} converted from {unit!r} to {fits_unit(expected)!r} "
                        f"(factor {factor:.6g})")
    return data


def check_and_resample(
    image: MapImage,
    *,
    channel: str,
    expected_unit: str | Any,
    model_pixel_mpc: float,
    model_npix: int,
) -> tuple[np.ndarray, list[str]]:
    """A map in the channel's unit on the model's grid: ``(model_npix, model_npix)`` centred on
    world (0, 0) Mpc (the halo centre) with pixels of ``model_pixel_mpc``.

    Unit: ``image.unit`` must be convertible to ``expected_unit`` (astropy equivalence); a scale
    factor is applied with a message. Scale: the ratio ``r = model_pixel_mpc / image.pixel_mpc``:

    * ``r`` = 1 and the field aligned on pixel edges: a crop;
    * ``r`` an integer > 1, aligned: block means (:func:`cmpipe.model.dataset.block_mean` of the
      crop);
    * otherwise, ``r >= 0.99``: area-weighted resampling (:func:`area_resample`: mean surface
      brightness preserved);
    * ``r < 0.99``: refused (upsampling cannot add the detail the model was trained on).

    The field ``model_npix * model_pixel_mpc`` must lie inside the image.

    Parameters
    ----------
    image : MapImage
    channel : str
        The channel it is used as (for messages).
    expected_unit : str or astropy unit
        The channel's unit (:data:`FITS_UNITS`, or cmpipe's description).
    model_pixel_mpc : float
        The model grid's pixel side [physical Mpc].
    model_npix : int
        The model grid's pixels per side.

    Returns
    -------
    maps : ndarray, shape (model_npix, model_npix)
        float64, in ``expected_unit``.
    messages : list of str
        What was done (unit conversion, resampling factor, crop, flips).

    Raises
    ------
    FitsError
        Naming the file: an incompatible unit (both units named), pixels coarser than the model's
        by more than 1 %, a field smaller than the model's, or non-finite values in the field.
    """
    name = image.path
    messages = list(image.notes)
    data = _in_unit(image.data, image.unit, expected_unit, channel, name, messages)

    ratio = float(model_pixel_mpc) / image.pixel_mpc
    h, w = data.shape
    field_mpc = model_npix * float(model_pixel_mpc)
    if ratio < 1.0 - _UPSAMPLE_TOLERANCE:
        raise FitsError(
            f"{name}: pixels of {image.pixel_mpc:g} Mpc are coarser than the model's {model_pixel_mpc:g} Mpc "
            f"(ratio {ratio:.4g} < 0.99): upsampling cannot recover the small-scale structure the model "
            "was trained on; provide a map at the model's resolution or finer"
        )
    span = model_npix * ratio  # field side [input pixels]
    cx, cy = image.centre_pix[0] + 0.5, image.centre_pix[1] + 0.5  # centre in edge coordinates
    x0, y0 = cx - 0.5 * span, cy - 0.5 * span
    if x0 < -_PIX_TOL or y0 < -_PIX_TOL or x0 + span > w + _PIX_TOL or y0 + span > h + _PIX_TOL:
        raise FitsError(
            f"{name}: the {channel} map covers {w * image.pixel_mpc:g} x {h * image.pixel_mpc:g} Mpc "
            f"(x {-cx * image.pixel_mpc:+.4g} to {(w - cx) * image.pixel_mpc:+.4g}, "
            f"y {-cy * image.pixel_mpc:+.4g} to {(h - cy) * image.pixel_mpc:+.4g} Mpc around the halo centre); "
            f"the model needs {field_mpc:g} x {field_mpc:g} Mpc centred on it: the image is too small"
        )
    k = round(ratio)
    integer = abs(ratio - k) <= _SAME_SCALE_RTOL * ratio
    aligned = abs(x0 - round(x0)) < _PIX_TOL and abs(y0 - round(y0)) < _PIX_TOL
    if integer and aligned:
        ix, iy = int(round(x0)), int(round(y0))
        crop = data[iy : iy + k * model_npix, ix : ix + k * model_npix]
        # Block means as cmpipe.model.dataset.block_mean (not imported: it would load torch).
        out = crop.reshape(model_npix, k, model_npix, k).mean(axis=(1, 3)) if k > 1 else np.array(crop, dtype=np.float64)
        if k > 1:
            messages.append(f"{name}: {channel} block-averaged by {k}x{k} "
                            f"({image.pixel_mpc:g} -> {model_pixel_mpc:g} Mpc, factor {ratio:g})")
    else:
        out = area_resample(data, x0, y0, ratio, model_npix)
        why = "a sub-pixel shift to the halo centre" if integer else f"factor {ratio:.6g}"
        messages.append(f"{name}: {channel} resampled by area weighting ({image.pixel_mpc:g} -> "
                        f"{model_pixel_mpc:g} Mpc, {why})")
    if (h, w) != (round(span), round(span)):
        messages.append(f"{name}: {channel} cropped from {w}x{h} pixels to the model's {field_mpc:g} Mpc field")
    if not np.all(np.isfinite(out)):
        raise FitsError(f"{name}: the {channel} map has non-finite values inside the model's field")
    return out, messages


# ------------------------------------------------------------------------------ sky (RA/Dec) maps


@dataclass(frozen=True)
class SkyImage:
    """One 2-d map with a celestial WCS (RA/Dec, Galactic, ...; any projection astropy.wcs reads).

    Attributes
    ----------
    data : ndarray, shape (H, W)
        float64, indexed ``[iy, ix]`` as stored (FITS axis 1 is ``ix``; no flips: the WCS places
        every pixel).
    wcs : astropy.wcs.WCS
        The celestial WCS of the two image axes (``WCS(header).celestial``).
    unit : str
        ``BUNIT`` (or the plane's ``CHUNITn``) as written ('' if absent: dimensionless).
    channel : str or None
        ``CHANNEL`` (or the plane's ``CHNAMEn``), if any.
    header : astropy.io.fits.Header
    path : str
    """

    data: np.ndarray
    wcs: Any
    unit: str
    channel: str | None
    header: Any
    path: str

    def centre(self) -> Any:
        """The sky position (``SkyCoord``) of the map's central pixel, 0-based ``((W - 1) / 2, (H - 1) / 2)``."""
        h, w = self.data.shape
        return self.wcs.pixel_to_world((w - 1) / 2.0, (h - 1) / 2.0)


def _celestial_wcs(header: Any) -> Any:
    """The header's WCS if it has celestial axes, else None (also for a header astropy.wcs
    cannot parse: :func:`read_map_fits` then names what is wrong)."""
    from astropy.wcs import WCS

    if not any(str(header.get(f"CTYPE{i}", "")).strip() for i in range(1, int(header.get("NAXIS", 0)) + 1)):
        return None
    try:
        wcs = WCS(header)
    except (ValueError, KeyError, MemoryError):
        return None
    return wcs if wcs.has_celestial else None


def read_input_fits(
    path: str | os.PathLike[str], *, hdu: int | str | None = None, channel: str | int | None = None
) -> MapImage | SkyImage:
    """One map of a FITS file: a :class:`SkyImage` if its WCS has celestial axes (RA/Dec,
    Galactic, ...), else a :class:`MapImage` with a physical-length WCS (:func:`read_map_fits`).

    A sky map's celestial axes must be its FITS axes 1 and 2 (either order); further axes of
    length 1 (frequency, Stokes) are dropped, and a cmpipe ``(C, H, W)`` cube gives the plane of
    ``channel``.

    Raises
    ------
    FitsError
        As :func:`read_map_fits`, and for a sky map whose celestial axes are not axes 1 and 2,
        with more than one plane, or with an unparseable unit.
    OSError
        A missing or unreadable path.
    """
    name = str(path)
    header, data = _read_hdu(path, hdu, name)
    wcs = _celestial_wcs(header)
    if wcs is None:
        return read_map_fits(path, hdu=hdu, channel=channel)
    if sorted((wcs.wcs.lng, wcs.wcs.lat)) != [0, 1]:
        raise FitsError(f"{name}: the celestial axes are FITS axes {wcs.wcs.lng + 1} and {wcs.wcs.lat + 1}; "
                        "cmpipe reads sky maps whose axes 1 and 2 are the celestial ones")
    if data.ndim > 2 and "CHNAME1" not in header:
        if any(n != 1 for n in data.shape[:-2]):
            raise FitsError(f"{name}: data of shape {data.shape}: a sky map with more than one plane (pick one)")
        data = data.reshape(data.shape[-2:])
    plane, chan, unit = _plane(data, header, channel, name)
    parse_unit(unit, path=name, what="BUNIT")
    return SkyImage(data=np.ascontiguousarray(plane), wcs=wcs.celestial, unit=str(unit), channel=chan,
                    header=header, path=name)


def header_redshift(header: Any) -> float | None:
    """The redshift a FITS header records: ``REDSHIFT``, else ``Z`` (None if neither is a number)."""
    for key in ("REDSHIFT", "Z"):
        value = header.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            return float(value)
    return None


def sky_grid_wcs(npix: int, pixel_deg: float, centre: Any, like: Any) -> Any:
    """The celestial WCS of a model grid: a gnomonic (TAN) projection at ``centre``, ``npix``
    pixels of ``pixel_deg`` per side, north up and east left (``CDELT1 < 0``), in the celestial
    frame of ``like`` (its axis types, ``RADESYS`` and ``EQUINOX``).

    The grid's pixel ``(ix, iy)`` (0-based) is the model's map pixel ``[iy, ix]``: model ``x``
    runs west and ``y`` north, and the centre of the grid (``CRPIX = (npix + 1) / 2``) is the
    halo centre.

    Parameters
    ----------
    npix : int
    pixel_deg : float
        Pixel side [deg] (the model pixel [Mpc] over the angular diameter distance).
    centre : astropy.coordinates.SkyCoord
        Transformed to ``like``'s frame.
    like : astropy.wcs.WCS
        A celestial WCS (an input map's).

    Returns
    -------
    astropy.wcs.WCS
    """
    from astropy.wcs import WCS
    from astropy.wcs.utils import wcs_to_celestial_frame

    frame = wcs_to_celestial_frame(like)
    c = centre.transform_to(frame).spherical
    lng, lat = like.wcs.lngtyp or "RA", like.wcs.lattyp or "DEC"
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [f"{lng:-<4}-TAN", f"{lat:-<4}-TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crpix = [(npix + 1) / 2.0, (npix + 1) / 2.0]
    wcs.wcs.crval = [float(c.lon.deg), float(c.lat.deg)]
    wcs.wcs.cdelt = [-float(pixel_deg), float(pixel_deg)]
    if like.wcs.radesys:
        wcs.wcs.radesys = like.wcs.radesys
    if like.wcs.radesys in ("FK4", "FK5", "FK4-NO-E") and np.isfinite(like.wcs.equinox):
        wcs.wcs.equinox = like.wcs.equinox
    wcs.wcs.set()
    return wcs


def sky_wcs_cards(wcs: Any, pixel_mpc: float) -> list[tuple[str, Any, str]]:
    """FITS cards of a model grid's celestial WCS (:func:`sky_grid_wcs`), and the model's own
    grid in physical Mpc about the halo centre (``x`` growing with the pixel index, as the
    linear WCS of physical maps) as the alternate WCS ``P`` (``WCSNAMEP = 'PHYSICAL'``:
    ``astropy.wcs.WCS(header, key="P")``)."""
    w = wcs.wcs
    cards: list[tuple[str, Any, str]] = []
    for i, comment in ((0, "longitude"), (1, "latitude")):
        n = i + 1
        cards += [(f"CTYPE{n}", w.ctype[i], f"{comment}, gnomonic projection"), (f"CUNIT{n}", "deg", ""),
                  (f"CRPIX{n}", float(w.crpix[i]), "halo centre"),
                  (f"CRVAL{n}", float(w.crval[i]), "[deg] halo centre"),
                  (f"CDELT{n}", float(w.cdelt[i]), "[deg] pixel size at the redshift")]
    if w.radesys:
        cards.append(("RADESYS", w.radesys, "celestial frame"))
    if np.isfinite(w.equinox):
        cards.append(("EQUINOX", float(w.equinox), "[yr] equinox"))
    cards.append(("WCSNAMEP", "PHYSICAL", "alternate WCS P: Mpc about the halo"))
    for n, axis in ((1, "X"), (2, "Y")):
        cards += [(f"CTYPE{n}P", axis, f"linear map {axis.lower()}, halo centre at 0"), (f"CUNIT{n}P", "Mpc", ""),
                  (f"CRPIX{n}P", float(w.crpix[n - 1]), "halo centre"), (f"CRVAL{n}P", 0.0, "[Mpc] halo centre"),
                  (f"CDELT{n}P", float(pixel_mpc), "[Mpc] pixel size")]
    return cards


def _clip_half_plane(poly: np.ndarray, axis: int, bound: np.ndarray, keep_above: bool) -> np.ndarray:
    """Convex polygons ``(N, V, 2)`` clipped to ``coord >= bound`` (or ``<=``), as ``(N, V + 2, 2)``
    (Sutherland-Hodgman). Unused vertex slots repeat the last vertex (zero-length edges leave
    areas and later clips unchanged); an empty result is all zeros."""
    n, v = poly.shape[:2]
    coord = poly[..., axis]
    inside = coord >= bound[:, None] if keep_above else coord <= bound[:, None]
    nxt = np.roll(poly, -1, axis=1)
    cross = inside != np.roll(inside, -1, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(cross, (bound[:, None] - coord) / (nxt[..., axis] - coord), 0.0)
    emitted = np.stack([poly, poly + t[..., None] * (nxt - poly)], axis=2).reshape(n, 2 * v, 2)
    keep = np.stack([inside, cross], axis=2).reshape(n, 2 * v)
    order = np.argsort(~keep, axis=1, kind="stable")[:, : v + 2]
    count = keep.sum(axis=1)
    slots = np.minimum(np.arange(v + 2)[None, :], np.maximum(count - 1, 0)[:, None])
    out = np.take_along_axis(np.take_along_axis(emitted, order[..., None], axis=1), slots[..., None], axis=1)
    out[count == 0] = 0.0
    return out


def _polygon_area(poly: np.ndarray) -> np.ndarray:
    """Unsigned areas of polygons ``(N, V, 2)`` (shoelace)."""
    x, y = poly[..., 0], poly[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))


def polygon_resample(data: np.ndarray, corner_x: np.ndarray, corner_y: np.ndarray,
                     max_pairs: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Exact area-weighted means of a piecewise-constant map over quadrilaterals.

    Input pixel ``[iy, ix]`` covers ``[ix, ix + 1] x [iy, iy + 1]`` (edge coordinates); output
    pixel ``[j, i]`` is the quadrilateral of corners ``[j, i]``, ``[j, i + 1]``, ``[j + 1, i + 1]``,
    ``[j + 1, i]`` of ``corner_x``, ``corner_y`` (straight edges in input pixel space), assumed
    convex. Its value is the mean of the input over its overlap with the input (each input
    pixel weighted by its exact overlap area, polygon clipping): surface brightness is
    preserved pixel by pixel and the integral over a field the quadrilaterals tile is
    conserved. Where the input is axis-aligned with the output this equals
    :func:`area_resample`.

    Parameters
    ----------
    data : ndarray, shape (H, W)
    corner_x, corner_y : ndarray, shape (R + 1, R + 1)
        Output pixel corners [input pixels, edge coordinates].
    max_pairs : int
        (output pixel, input pixel) pairs clipped at once (memory: about 400 bytes each).

    Returns
    -------
    values : ndarray, shape (R, R)
        Means over the covered part (0 where nothing is covered); NaN where a covered input
        pixel is not finite.
    coverage : ndarray, shape (R, R)
        Fraction of each quadrilateral inside the input map.
    """
    data = np.asarray(data, dtype=np.float64)
    h, w = data.shape
    c = np.stack([np.asarray(corner_x, dtype=np.float64), np.asarray(corner_y, dtype=np.float64)], axis=-1)
    r = c.shape[0] - 1
    quads = np.stack([c[:-1, :-1], c[:-1, 1:], c[1:, 1:], c[1:, :-1]], axis=-2).reshape(-1, 4, 2)
    quad_area = _polygon_area(quads)
    lo = np.clip(np.floor(quads.min(axis=1)).astype(np.int64), 0, [w, h])
    hi = np.clip(np.ceil(quads.max(axis=1)).astype(np.int64), 0, [w, h])
    kx, ky = (int(max(1, (hi - lo)[:, k].max())) for k in (0, 1))
    ox, oy = (a.ravel() for a in np.meshgrid(np.arange(kx), np.arange(ky)))
    total, covered, bad = (np.zeros(len(quads)) for _ in range(3))
    step = max(1, max_pairs // (kx * ky))
    for s in range(0, len(quads), step):
        q = quads[s : s + step]
        ix, iy = lo[s : s + step, :1] + ox, lo[s : s + step, 1:] + oy  # (n, K) input pixels
        valid = (ix < hi[s : s + step, :1]) & (iy < hi[s : s + step, 1:])
        poly = np.broadcast_to(q[:, None], (*ix.shape, 4, 2)).reshape(-1, 4, 2)
        fx, fy = ix.ravel().astype(np.float64), iy.ravel().astype(np.float64)
        for axis, bound, above in ((0, fx, True), (0, fx + 1.0, False), (1, fy, True), (1, fy + 1.0, False)):
            poly = _clip_half_plane(poly, axis, bound, above)
        area = np.where(valid.ravel(), _polygon_area(poly), 0.0).reshape(ix.shape)
        values = data[np.minimum(iy, h - 1), np.minimum(ix, w - 1)]
        finite = np.isfinite(values)
        total[s : s + step] = np.sum(area * np.where(finite, values, 0.0), axis=1)
        covered[s : s + step] = area.sum(axis=1)
        bad[s : s + step] = np.sum(area * ~finite, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(covered > 0, total / covered, 0.0)
    mean[bad > 1e-12 * np.maximum(quad_area, 1e-300)] = np.nan
    return mean.reshape(r, r), (covered / quad_area).reshape(r, r)


def reproject_to_grid(
    image: SkyImage,
    *,
    channel: str,
    expected_unit: str | Any,
    grid_wcs: Any,
    model_npix: int,
    model_pixel_mpc: float,
) -> tuple[np.ndarray, list[str]]:
    """A sky map in the channel's unit on the model's grid (:func:`sky_grid_wcs`).

    The corners of the model's pixels are carried to the input's pixel grid through the two
    WCSs (astropy, with the frame transformation if they differ), and each model pixel is the
    area-weighted mean of the input over its footprint (:func:`polygon_resample`): the maps
    are intensities (y, a line integral along each sightline; S_X per steradian), so surface
    brightness is preserved, and with it the flux ``integral S dOmega`` of the field.

    Raises
    ------
    FitsError
        Naming the file: an incompatible unit, input pixels coarser than the model's by more
        than 1 % (upsampling is refused as for physical maps), a field not inside the map, or
        non-finite values in the field.
    """
    name = image.path
    messages: list[str] = []
    data = _in_unit(image.data, image.unit, expected_unit, channel, name, messages)
    n = int(model_npix)
    edges = np.arange(n + 1, dtype=np.float64) - 0.5
    gx, gy = np.meshgrid(edges, edges)
    world = grid_wcs.pixel_to_world(gx, gy)
    with np.errstate(invalid="ignore"):
        px, py = image.wcs.world_to_pixel(world)
    px, py = np.asarray(px) + 0.5, np.asarray(py) + 0.5  # edge coordinates: pixel i spans [i, i + 1]
    if not (np.all(np.isfinite(px)) and np.all(np.isfinite(py))):
        raise FitsError(f"{name}: the model's field does not project onto the {channel} map's pixel grid")
    out, coverage = polygon_resample(data, px, py)
    # Input pixels per model pixel, from the footprints' areas: the scale ratio r of physical maps.
    quad = np.abs((px[1:, 1:] - px[:-1, :-1]) * (py[:-1, 1:] - py[1:, :-1])
                  - (px[:-1, 1:] - px[1:, :-1]) * (py[1:, 1:] - py[:-1, :-1])) / 2.0
    ratio = float(np.sqrt(np.median(quad)))
    input_mpc = float(model_pixel_mpc) / ratio
    input_arcmin = abs(float(grid_wcs.wcs.cdelt[1])) * 60.0 / ratio
    if ratio < 1.0 - _UPSAMPLE_TOLERANCE:
        raise FitsError(
            f"{name}: pixels of {input_arcmin:.4g} arcmin ({input_mpc:.4g} Mpc at the redshift) are coarser than the "
            f"model's {model_pixel_mpc:g} Mpc (ratio {ratio:.4g} < 0.99): upsampling cannot recover the small-scale "
            "structure the model was trained on; provide a map at the model's resolution or finer"
        )
    if np.any(coverage < 1.0 - _SKY_COVERAGE_TOL):
        field_mpc = n * float(model_pixel_mpc)
        raise FitsError(
            f"{name}: the model needs {field_mpc:g} x {field_mpc:g} Mpc ({n * abs(grid_wcs.wcs.cdelt[1]) * 60:.4g} "
            f"arcmin) centred on the halo; {100 * float(np.mean(1 - coverage)):.3g} % of that field lies "
            f"outside the {channel} map: the image is too small (or not centred on the cluster)"
        )
    if not np.all(np.isfinite(out)):
        raise FitsError(f"{name}: the {channel} map has non-finite values inside the model's field")
    messages.append(f"{name}: {channel} reprojected from {image.wcs.wcs.ctype[0].strip()} pixels of {input_arcmin:.4g} "
                    f"arcmin ({input_mpc:.4g} Mpc) onto the model's {n}x{n} TAN grid by exact area weighting "
                    f"(factor {ratio:.4g}, surface brightness preserved)")
    return out, messages
