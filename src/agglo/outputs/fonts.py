"""A CJK font for matplotlib, so Chinese labels render as characters rather than boxes.

agglo depends on the PyPI package ``noto-cjk-sans-otc`` (Google's Noto Sans CJK collection,
SIL Open Font License 1.1), which installs with pip on any machine; no system font is needed.
:func:`register_cjk_font` adds it to matplotlib's font manager once and returns the family
name of its Simplified-Chinese face; :func:`font_family` is the family list the plotting
functions use (the CJK face first, DejaVu Sans as fallback for symbols).

If the package is missing (a stripped-down install), fonts already on the system that cover
Chinese (e.g. Debian's ``fonts-noto-cjk``) are used instead; if there are none, a warning says
how to install one.

QGIS draws the layers' labels with the system's fonts: the QGIS styles name
:data:`CJK_FAMILY`, and Qt falls back to any installed font that covers Chinese when that family
is absent (``Microsoft YaHei`` on Windows, ``PingFang SC`` on macOS). On a machine with no
CJK font at all, :func:`install_cjk_font` copies the bundled font into the user's font folder,
where QGIS (through fontconfig or the system font manager) finds it at its next start.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

from matplotlib import font_manager

__all__ = [
    "CJK_FAMILY",
    "font_family",
    "font_has_glyphs",
    "install_cjk_font",
    "register_cjk_font",
    "user_font_folder",
]

log = logging.getLogger(__name__)

#: family name of the Simplified-Chinese face of the bundled Noto Sans CJK collection
CJK_FAMILY = "Noto Sans CJK SC"

# faces already known to matplotlib that also cover Chinese, in order of preference
_SYSTEM_FALLBACKS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
)


def _package_font() -> Path | None:
    try:
        import noto_cjk_sans_otc
    except ImportError:
        return None
    path = Path(str(noto_cjk_sans_otc.FONT_PATH))
    return path if path.is_file() else None


@functools.cache
def register_cjk_font() -> str | None:
    """Register the bundled CJK font with matplotlib (once) and return its family name.

    Returns
    -------
    str or None
        ``"Noto Sans CJK SC"`` normally; a system family covering Chinese if the font package
        is missing; ``None`` (with a warning) if no CJK font can be found.

    Examples
    --------
    >>> register_cjk_font()
    'Noto Sans CJK SC'
    """
    path = _package_font()
    if path is not None:
        known = {f.name for f in font_manager.fontManager.ttflist if Path(f.fname) == path}
        if not known:
            font_manager.fontManager.addfont(str(path))
        log.debug("registered CJK font %s", path)
        return CJK_FAMILY
    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in _SYSTEM_FALLBACKS:
        if name in names:
            return name
    warnings.warn(
        "no CJK font found: Chinese labels will show as boxes; install one with "
        "`pip install noto-cjk-sans-otc` (or Debian's fonts-noto-cjk).",
        UserWarning,
        stacklevel=2,
    )
    return None


def font_family() -> list[str]:
    """Font family list for agglo figures: the CJK face first, then DejaVu Sans.

    Examples
    --------
    >>> font_family()
    ['Noto Sans CJK SC', 'DejaVu Sans']
    """
    cjk = register_cjk_font()
    return [cjk, "DejaVu Sans"] if cjk else ["DejaVu Sans"]


def font_has_glyphs(path: str | Path, text: str, *, face_index: int = 0) -> bool:
    """Whether the font file (face ``face_index`` of a collection) maps every character of ``text``.

    Whitespace is ignored. Uses fontTools to read the font's ``cmap`` table.

    Examples
    --------
    >>> from matplotlib import font_manager
    >>> _ = register_cjk_font()
    >>> found = font_manager.findfont(font_manager.FontProperties(family=CJK_FAMILY))
    >>> font_has_glyphs(found, "成都市", face_index=getattr(found, "face_index", 0))
    True
    """
    from fontTools.ttLib import TTCollection, TTFont

    path = str(path)
    if path.lower().endswith((".ttc", ".otc")):
        font = TTCollection(path, lazy=True).fonts[face_index]
    else:
        font = TTFont(path, lazy=True)
    cmap = font.getBestCmap() or {}
    return all(ord(ch) in cmap for ch in text if not ch.isspace())


def user_font_folder() -> Path:
    """The folder of per-user fonts that QGIS (Qt) reads on this system.

    ``~/.local/share/fonts`` (fontconfig, Linux; ``$XDG_DATA_HOME/fonts`` if set),
    ``~/Library/Fonts`` (macOS), ``%LOCALAPPDATA%\\Microsoft\\Windows\\Fonts`` (Windows).

    Examples
    --------
    >>> user_font_folder().name
    'fonts'
    """
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Fonts"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA", str(Path.home() / "AppData" / "Local"))
        return Path(base) / "Microsoft" / "Windows" / "Fonts"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "fonts"


def install_cjk_font(folder: str | Path | None = None) -> Path:
    """Copy the bundled Noto Sans CJK font into ``folder`` (default :func:`user_font_folder`).

    For machines with no font that covers Chinese: after this, QGIS labels of the agglo layers
    (family :data:`CJK_FAMILY`) draw as characters instead of boxes. An existing copy is kept.
    On Windows, a font copied into the per-user folder is used only once it is registered
    (right-click the file, *Install*).

    Returns
    -------
    pathlib.Path
        The font file in ``folder``.

    Raises
    ------
    agglo.errors.AggloInputError
        If the font package ``noto-cjk-sans-otc`` is not installed.

    Examples
    --------
    >>> import tempfile
    >>> install_cjk_font(tempfile.mkdtemp()).suffix
    '.ttc'
    """
    from agglo.errors import AggloInputError

    source = _package_font()
    if source is None:
        raise AggloInputError(
            "the bundled CJK font is missing; install it with `pip install noto-cjk-sans-otc`."
        )
    target = Path(folder) if folder is not None else user_font_folder()
    target.mkdir(parents=True, exist_ok=True)
    dest = target / source.name
    if not dest.is_file() or dest.stat().st_size != source.stat().st_size:
        shutil.copyfile(source, dest)
        log.info("installed %s into %s", source.name, target)
    return dest
