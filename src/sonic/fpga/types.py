"""Fixed-point types as hls4ml writes them: parsing, printing, and what a type implies.

Where this sits: every part of :mod:`sonic.fpga` that takes a precision from a person (the
CLI, :class:`~sonic.fpga.convert.ConversionConfig`, the scan) goes through :func:`parse_fixed`,
so ``'ap_fixed<16,6>'``, ``'fixed<16,6>'`` and ``'ap_ufixed<8,3,AP_RND,AP_SAT>'`` mean the same
thing everywhere and a typo fails early, with the accepted forms in the message, instead of deep
inside hls4ml's C++ generation. The numbers a type implies (its LSB, its range) are what the
numerics checks use as tolerances.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sonic.protocol.errors import InvalidArgument

__all__ = ["ROUNDING_MODES", "SATURATION_MODES", "FixedType", "parse_fixed"]

#: hls4ml / Vivado HLS quantization (rounding) modes, without the ``AP_`` prefix.
ROUNDING_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
#: Overflow (saturation) modes, without the ``AP_`` prefix.
SATURATION_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")

_FIXED = re.compile(
    r"^\s*(?:ap_|ac_)?(?P<u>u?)fixed\s*<\s*(?P<w>\d+)\s*,\s*(?P<i>-?\d+)\s*"
    r"(?:,\s*(?P<rest>[^>]*))?>\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class FixedType:
    """``ap_[u]fixed<width, integer, rounding, saturation>``: ``integer`` counts the sign bit."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    saturation: str = "WRAP"

    @property
    def fractional(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        """The value of one least-significant bit: the resolution of the type."""
        return float(2.0 ** (-self.fractional))

    @property
    def max(self) -> float:
        """The largest representable value."""
        top = self.integer - 1 if self.signed else self.integer
        return float(2.0**top - self.lsb)

    @property
    def min(self) -> float:
        return float(-(2.0 ** (self.integer - 1))) if self.signed else 0.0

    @property
    def hls(self) -> str:
        """The Vivado/Vitis HLS spelling, e.g. ``ap_fixed<16,6>`` or ``ap_ufixed<8,3,AP_RND,AP_SAT>``."""
        base = f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}"
        if self.rounding == "TRN" and self.saturation == "WRAP":
            return base + ">"
        return base + f",AP_{self.rounding},AP_{self.saturation}>"

    @property
    def short(self) -> str:
        """A file-name friendly spelling: ``fixed16_6`` / ``ufixed8_3_rnd_sat``."""
        text = f"{'' if self.signed else 'u'}fixed{self.width}_{self.integer}".replace("-", "m")
        if self.rounding != "TRN" or self.saturation != "WRAP":
            text += f"_{self.rounding}_{self.saturation}".lower()
        return text

    def quantize(self, values: object) -> object:
        """Round ``values`` (numpy array) to this type as the C++ cast does (float inputs).

        Used to put test inputs on the input grid; saturation modes other than WRAP clip,
        WRAP wraps modulo the range.
        """
        import numpy as np

        x = np.asarray(values, dtype=np.float64) / self.lsb
        if self.rounding == "TRN":
            q = np.floor(x)
        elif self.rounding == "RND_CONV":
            q = np.round(x)
        elif self.rounding == "TRN_ZERO":
            q = np.trunc(x)
        else:  # RND and the other round-half variants: half up
            q = np.floor(x + 0.5)
        lo, hi = self.min / self.lsb, self.max / self.lsb
        if self.saturation == "WRAP":
            span = hi - lo + 1
            q = (q - lo) % span + lo
        else:
            q = np.clip(q, lo, hi)
        return q * self.lsb

    def __str__(self) -> str:
        return self.hls


def parse_fixed(text: str) -> FixedType:
    """Parse ``[ap_|ac_][u]fixed<W,I[,ROUNDING[,SATURATION[,N]]]>`` (spaces and case free).

    ``ac_fixed<W,I,true|false>`` (Catapult/Quartus spelling) is accepted too: its third field
    is the signedness.
    """
    m = _FIXED.match(text)
    if not m:
        raise InvalidArgument(
            f"precision {text!r} is not a fixed-point type; expected e.g. 'ap_fixed<16,6>', "
            "'ap_ufixed<8,3>' or 'ap_fixed<12,5,AP_RND,AP_SAT>'"
        )
    width, integer = int(m["w"]), int(m["i"])
    signed = not m["u"]
    rounding, saturation = "TRN", "WRAP"
    rest = [p.strip() for p in (m["rest"] or "").split(",") if p.strip()]
    if rest and rest[0].lower() in ("true", "false"):
        signed = rest.pop(0).lower() == "true"
    if rest:
        rounding = rest.pop(0).upper().removeprefix("AP_")
        if rounding not in ROUNDING_MODES:
            raise InvalidArgument(
                f"precision {text!r}: unknown rounding mode; expected one of {ROUNDING_MODES}"
            )
    if rest:
        saturation = rest.pop(0).upper().removeprefix("AP_")
        if saturation not in SATURATION_MODES:
            raise InvalidArgument(
                f"precision {text!r}: unknown saturation mode; expected one of {SATURATION_MODES}"
            )
    if width < 1 or width > 1024:
        raise InvalidArgument(f"precision {text!r}: width {width} outside 1..1024")
    return FixedType(width, integer, signed, rounding, saturation)
