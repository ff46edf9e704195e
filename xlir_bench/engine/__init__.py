"""The one evaluation engine behind every suite: pools (:mod:`.pools`), tiles (:mod:`.tiles`), the exact pass
(:mod:`.core`) and the measures drawn from it (:mod:`.outcome`)."""

from .core import ENGINE, TIE_RULE, Engine
from .data import Corpus, EvalSuite, QueryTable
from .outcome import Outcome
from .pools import SETTINGS, Pool

__all__ = ["ENGINE", "SETTINGS", "TIE_RULE", "Corpus", "Engine", "EvalSuite", "Outcome", "Pool", "QueryTable"]
