"""Multi-agent role-play synthesis: plan scenarios over a tool registry, play them into
labelled trajectories (see docs/synth.md)."""

from tooldojo.synth.dedup import NearDuplicateFilter
from tooldojo.synth.episode import CURRENT_EPISODE, EpisodeEnv, EpisodeFailed, run_episode
from tooldojo.synth.labels import ArgumentDrafter, find_pointer, label_call, possible_answers
from tooldojo.synth.pipeline import SynthRequest, prepare_run, run_prepared
from tooldojo.synth.planner import Plan, PlanOptions, plan_scenarios
from tooldojo.synth.runner import Failed, SynthAborted, run_shard, synth_to_dir
from tooldojo.synth.workers import run_with_workers

__all__ = [
    "CURRENT_EPISODE",
    "ArgumentDrafter",
    "EpisodeEnv",
    "EpisodeFailed",
    "Failed",
    "NearDuplicateFilter",
    "Plan",
    "PlanOptions",
    "SynthAborted",
    "SynthRequest",
    "find_pointer",
    "label_call",
    "plan_scenarios",
    "possible_answers",
    "prepare_run",
    "run_episode",
    "run_prepared",
    "run_shard",
    "run_with_workers",
    "synth_to_dir",
]
