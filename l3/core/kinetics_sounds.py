"""Kinetics-Sounds: the 34 classes of the paper's appendix A, and their names in
the released Kinetics-400 class list. The one place this mapping lives.

The paper (section 3.1, appendix A) picked these classes from a pre-release
version of Kinetics, "potentially manifested visually and aurally". Some were
renamed in the public release; three do not exist in it at all.

Note on the mapping (checked against the released Kinetics-400 class list):

* 27 names are identical;
* 4 were renamed: "blowing out" -> "blowing out candles", "dribbling ball" ->
  "dribbling basketball", "mowing the lawn by pushing lawnmower" -> "mowing
  lawn", "stomping" -> "stomping grapes";
* 3 are absent from Kinetics-400: "typing", "fingerpicking", "patting" (no
  released class is the same action; "petting animal (not cat)" is not
  "patting"). They map to None, so a Kinetics-400 build of Kinetics-Sounds has
  31 classes. If you have a Kinetics release that contains them, add them to
  `EXTRA_NAMES` rather than editing the table.
"""

from typing import Dict, Optional, Tuple

# Appendix A, in the paper's order.
PAPER_CLASSES: Tuple[str, ...] = (
    "blowing nose", "bowling", "chopping wood", "ripping paper", "shuffling cards",
    "singing", "tapping pen", "typing", "blowing out", "dribbling ball", "laughing",
    "mowing the lawn by pushing lawnmower", "shoveling snow", "stomping", "tap dancing",
    "tapping guitar", "tickling", "fingerpicking", "patting", "playing accordion",
    "playing bagpipes", "playing bass guitar", "playing clarinet", "playing drums",
    "playing guitar", "playing harmonica", "playing keyboard", "playing organ",
    "playing piano", "playing saxophone", "playing trombone", "playing trumpet",
    "playing violin", "playing xylophone",
)
assert len(PAPER_CLASSES) == 34

RENAMED: Dict[str, str] = {
    "blowing out": "blowing out candles",
    "dribbling ball": "dribbling basketball",
    "mowing the lawn by pushing lawnmower": "mowing lawn",
    "stomping": "stomping grapes",
}
NOT_IN_KINETICS_400: Tuple[str, ...] = ("typing", "fingerpicking", "patting")

# Paper name -> released name for classes absent from Kinetics-400; empty by default.
EXTRA_NAMES: Dict[str, str] = {}


def to_kinetics(paper_name: str) -> Optional[str]:
    """The released Kinetics class name of a paper class, or None if it has none."""
    if paper_name not in PAPER_CLASSES:
        raise KeyError(f"{paper_name!r} is not a Kinetics-Sounds class")
    if paper_name in EXTRA_NAMES:
        return EXTRA_NAMES[paper_name]
    if paper_name in NOT_IN_KINETICS_400:
        return None
    return RENAMED.get(paper_name, paper_name)


def kinetics_classes() -> Tuple[str, ...]:
    """Released names of the Kinetics-Sounds classes that exist there (31 for Kinetics-400)."""
    return tuple(n for n in (to_kinetics(p) for p in PAPER_CLASSES) if n is not None)


def from_kinetics(label: str) -> Optional[str]:
    """The paper's name for a released Kinetics label, or None if it is not Kinetics-Sounds."""
    for paper_name in PAPER_CLASSES:
        if to_kinetics(paper_name) == label:
            return paper_name
    return None


def is_kinetics_sounds(label: str) -> bool:
    """Whether a label (released or paper name) is one of the Kinetics-Sounds classes."""
    return label in PAPER_CLASSES or from_kinetics(label) is not None
