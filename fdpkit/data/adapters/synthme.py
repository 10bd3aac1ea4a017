"""SynthME, the kit's synthetic corpus, written in CASME II's layout (`<root>/sub01/EP01_01/img1.jpg`,
`<root>/SynthME-coding.xlsx` with CASME II's columns and lower-case emotions): it is read by the
CASME II path under its own dataset name; default protocol `synthme_5class`."""

from __future__ import annotations

from .casme2 import Casme2


class SynthME(Casme2):
    name = "synthme"
    sheet_patterns = ("synthme*coding*", "synthme*.xls*")
    frame_bases = (".",)
