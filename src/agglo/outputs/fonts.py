"""A CJK font for matplotlib, so Chinese labels render as characters rather than boxes.

agglo depends on the PyPI package ``noto-cjk-sans-otc`` (Google's Noto Sans CJK collection,
SIL Open Font License 1.1), which installs with pip on any machine; no system font is needed.
:func:`register_cjk_font` adds it to matplotlib's font manager once and returns the family
name of its Simplified-Chinese face; :func:`font_family` is the family list the plotting
functions use (the CJK face first, DejaVu Sans as fallback for symbols).

If the package is missing (a stripped-down install), fonts already on the system that cover
Chinese (e.g. Debian's ``fonts-noto-cjk``) are used instead; if there are none, a warning says
how to install one.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

from matplotlib import font_manager

__all__ = ["CJK_FAMILY", "font_family", "font_has_glyphs", "register_cjk_font"]

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
