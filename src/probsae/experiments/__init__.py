"""Reproducing the paper as commands: sweep configs (``presets``), the sweep runner (``sweep``),
and the report with its figures (``report``, ``plots``). CLI: ``probsae sweep`` / ``probsae report``."""

from .presets import SweepConfig, SweepMember, expand_grid, list_presets, load_config, member_name, parse_config
from .report import make_report
from .sweep import collect_results, prepare_data, run_sweep

__all__ = ["SweepMember", "SweepConfig", "expand_grid", "list_presets", "load_config", "member_name", "parse_config",
           "make_report", "collect_results", "prepare_data", "run_sweep"]
