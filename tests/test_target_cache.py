"""The target cache on real code paths: real experts, real files, a real ``coat targets`` subprocess killed with
SIGKILL half-way, and ``accelerate launch`` with two processes."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from coat.cli import main as coat_main
from coat.data.checks import AudioChecks
from coat.data.sources import ExampleListSource, FolderSource
from coat.experts import build_expert
from coat.experts.cache import MissingTargetsError, TargetCache
from coat.experts.compute import compute_targets, length_batches, pad_batch
from coat.experts.pitch import distribution_to_hz
from coat.targets import TargetSpec

REPO = Path(__file__).resolve().parent.parent
SR = 16000

# A small real expert, importable by subprocesses through `imports: [rms_expert]`.
RMS_EXPERT = '''
import numpy as np
import torch
from coat.experts import Expert, TargetSpec, register_expert


class RMSExpert(Expert):
    """Frame-level RMS energy (frames of `hop` samples) and the clip's peak."""

    name = "rms"

    def __init__(self, hop: int = 160, sample_rate: int = 16000, crash_after_batches=None, device="cpu"):
        super().__init__(device)
        self.hop, self.sample_rate = hop, sample_rate
        self.crash_after_batches, self.batches = crash_after_batches, 0  # a crash mid-run; output unchanged

    def specs(self):
        return (TargetSpec("rms", self.sample_rate, self.sample_rate / self.hop, 1, "regression"),
                TargetSpec("peak", self.sample_rate, None, 1, "regression"))

    def params(self):
        return {"hop": self.hop}

    def compute(self, waveforms, lengths):
        self.batches += 1
        if self.crash_after_batches is not None and self.batches > self.crash_after_batches:
            raise RuntimeError("out of memory (simulated)")
        out = []
        for wave, n in zip(waveforms, lengths.tolist()):
            frames = self.specs()[0].num_frames(n)
            padded = torch.nn.functional.pad(wave[:n], (0, frames * self.hop - n))
            rms = padded.view(frames, self.hop).pow(2).mean(-1).sqrt()
            out.append({"rms": rms[:, None].numpy().astype(np.float32),
                        "peak": wave[:n].abs().max().reshape(1, 1).numpy().astype(np.float32)})
        return out


register_expert("rms", RMSExpert)
'''


@pytest.fixture(scope="module")
def rms_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "rms_expert.py").write_text(RMS_EXPERT)
    sys.path.insert(0, str(folder))
    import rms_expert  # noqa: F401  (registers "rms")

    yield folder
    sys.path.remove(str(folder))


def write_clips(folder: Path, n: int, seed: int = 0, low: float = 0.3, high: float = 0.8) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        samples = int(rng.uniform(low, high) * SR)
        sr = SR if i % 3 else 22050  # some clips need resampling
        clip = (0.1 * rng.standard_normal(int(samples * sr / SR))).astype(np.float32)
        sf.write(folder / f"clip{i:03d}.wav", clip, sr, subtype="FLOAT")
    return folder


def assert_same_cache(a: TargetCache, b: TargetCache, atol: float = 1e-5):
    assert a.ids() == b.ids() and len(set(a.ids())) == len(a.ids())
    assert a.specs == b.specs
    for id_ in a.ids():
        ta, tb = a[id_], b[id_]
        assert ta.keys() == tb.keys()
        for k in ta:
            np.testing.assert_allclose(ta[k], tb[k], atol=atol, err_msg=f"{id_}/{k}")


def test_length_batches_fill_a_padded_budget():
    durations = [3.0, 1.0, 0.5, 2.0, 10.0, 1.0]
    batches = length_batches(durations, batch_seconds=4.0, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert [[durations[i] for i in b] for b in batches] == [[0.5, 1.0, 1.0], [2.0], [3.0], [10.0]]
    assert length_batches([1.0] * 5, 100.0, max_batch_size=2) == [[0, 1], [2, 3], [4]]


def test_cache_holds_what_the_expert_gives_and_names_missing_ids(tmp_path, rms_module):
    clips = write_clips(tmp_path / "clips", 7)
    src = FolderSource(clips)
    experts = [build_expert("rms"), build_expert("reconstruction", n_mels=16, logmel_from="extraction")]
    runs = compute_targets(src, experts, tmp_path / "cache", batch_seconds=1.5, progress=False)
    assert runs["rms"].computed == 7 and runs["rms"].cached == 7 and not runs["rms"].reused
    for expert in experts:
        cache = TargetCache.open(tmp_path / "cache", expert=expert.name)
        assert cache.path == runs[expert.name].path
        assert cache.ids() == src.ids() and cache.specs == expert.specs()
        for i, id_ in enumerate(src.ids()):
            clip = src.load(i, sample_rate=expert.sample_rate).audio
            alone = expert(*pad_batch([clip]))[0]
            got = cache[id_]
            for spec in expert.specs():  # float16 in the cache: 11 significant bits
                assert got[spec.name].shape == (spec.num_frames(len(clip)), spec.dim)
                np.testing.assert_allclose(got[spec.name], alone[spec.name], rtol=2 ** -11, atol=1e-6)
    cache = TargetCache.open(runs["rms"].path)
    assert "clip000.wav" in cache and "nope.wav" not in cache
    with pytest.raises(KeyError, match=r"not in the 'rms' target cache .*'nope.wav', 'gone.wav'"):
        cache.get(["clip001.wav", "nope.wav", "gone.wav"])
    with pytest.raises(ValueError, match="holds targets of expert 'rms'"):
        TargetCache.open(runs["rms"].path, expert="pitch")


def test_fingerprint_changes_with_parameters_and_audio_and_is_reused_otherwise(tmp_path, rms_module):
    src = FolderSource(write_clips(tmp_path / "clips", 4))
    first = compute_targets(src, [build_expert("rms", hop=160)], tmp_path / "cache", progress=False)["rms"]
    data_mtime = (first.path / "data").stat().st_mtime_ns
    again = compute_targets(src, [build_expert("rms", hop=160)], tmp_path / "cache", progress=False)["rms"]
    assert again.reused and again.computed == 0 and again.path == first.path
    assert (first.path / "data").stat().st_mtime_ns == data_mtime

    other = compute_targets(src, [build_expert("rms", hop=320)], tmp_path / "cache", progress=False)["rms"]
    assert other.path != first.path and other.computed == 4 and not other.reused
    assert TargetCache.open(other.path).specs[0].frame_rate == SR / 320
    # two caches of the expert in the root: a name is ambiguous, the expert's parameters pick one
    with pytest.raises(FileNotFoundError, match="2 target caches of expert 'rms'"):
        TargetCache.open(tmp_path / "cache", expert="rms")
    assert TargetCache.open(tmp_path / "cache", expert=build_expert("rms", hop=320)).path == other.path
    assert TargetCache.open(tmp_path / "cache", expert=build_expert("rms", hop=160), source=src).path == first.path

    time.sleep(0.01)
    sf.write(tmp_path / "clips" / "clip000.wav", np.full(8000, 0.2, np.float32), SR, subtype="FLOAT")  # changed audio
    changed = compute_targets(FolderSource(tmp_path / "clips"), [build_expert("rms", hop=160)], tmp_path / "cache",
                              progress=False)["rms"]
    assert changed.path != first.path and changed.computed == 4
    np.testing.assert_allclose(TargetCache.open(changed.path)["clip000.wav"]["peak"], [[0.2]], rtol=2 ** -11)


def test_bad_audio_is_reported_and_the_rest_is_cached(tmp_path, rms_module, capsys):
    clips = write_clips(tmp_path / "clips", 3)
    (clips / "garbage.wav").write_bytes(b"RIFF this is not a wav file at all")
    sf.write(clips / "empty.wav", np.zeros(0, np.float32), SR)
    nan = np.full(SR // 2, 0.1, np.float32)
    nan[100] = np.nan
    sf.write(clips / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(clips / "silent.wav", np.zeros(SR // 2, np.float32), SR)
    sf.write(clips / "short.wav", np.full(SR // 100, 0.1, np.float32), SR)  # 10 ms
    src = FolderSource(clips)
    run = compute_targets(src, [build_expert("rms")], tmp_path / "cache", progress=False,
                          checks=AudioChecks(min_seconds=0.05, silence_db=-80.0))["rms"]
    expected = {"garbage.wav": "unreadable", "empty.wav": "empty", "nan.wav": "nonfinite",
                "silent.wav": "silent", "short.wav": "too_short"}
    report = [json.loads(line) for line in (run.path / "report.jsonl").read_text().splitlines()]
    assert {r["id"]: r["reason"] for r in report} == expected
    assert all(r["detail"] for r in report)
    cache = TargetCache.open(run.path)
    assert cache.ids() == ["clip000.wav", "clip001.wav", "clip002.wav"]
    assert run.bad == {reason: 1 for reason in expected.values()} and run.cached == 3
    out = capsys.readouterr().out
    assert "3/8 examples cached" in out and "5 bad" in out and "report.jsonl" in out
    with pytest.raises(MissingTargetsError, match=r"'silent.wav' \(silent\)") as err:
        cache["silent.wav"]
    assert err.value.ids == ["silent.wav"]
    # thresholds are configurable: keep silent clips, allow short ones (a different cache: checks are fingerprinted)
    lenient = compute_targets(src, [build_expert("rms")], tmp_path / "cache", progress=False,
                              checks=AudioChecks(min_seconds=0.0, silence_db=None))["rms"]
    assert lenient.path != run.path and lenient.cached == 5
    assert set(lenient.bad) == {"unreadable", "empty", "nonfinite"}


def test_in_memory_examples_and_a_clip_level_target(tmp_path, rms_module):
    rng = np.random.default_rng(1)
    examples = [{"id": f"m{i}", "audio": (0.05 * rng.standard_normal(4000 + 900 * i)).astype(np.float32),
                 "sampling_rate": 8000} for i in range(5)]
    run = compute_targets(ExampleListSource(examples), [build_expert("rms")], tmp_path / "cache",
                          progress=False)["rms"]
    cache = TargetCache.open(run.path)
    for ex in examples:
        t = cache[ex["id"]]
        assert t["peak"].shape == (1, 1) and t["rms"].shape == (int(np.ceil(len(ex["audio"]) * 2 / 160)), 1)


def test_builtin_experts_from_a_saved_dataset_through_the_cli(tmp_path):
    """pitch (CREPE tiny, shipped weights) and reconstruction on a `datasets` folder with 8 kHz array audio."""
    import datasets

    rng = np.random.default_rng(3)
    t = np.arange(2400) / 8000
    audio = [{"array": (0.3 * np.sin(2 * np.pi * f * t) + 0.001 * rng.standard_normal(t.size)).astype(np.float32),
              "sampling_rate": 8000} for f in (220.0, 330.0)]
    datasets.Dataset.from_dict({"id": ["low", "high"], "audio": audio}).save_to_disk(tmp_path / "ds")
    assert coat_main(["targets", "data.source.path=" + str(tmp_path / "ds"),
                      "experts=[pitch, {name: reconstruction, params: {logmel_from: extraction}}]",
                      f"targets.cache_dir={tmp_path / 'cache'}", "progress=false"]) == 0
    pitch = TargetCache.open(tmp_path / "cache", expert="pitch")
    logmel = TargetCache.open(tmp_path / "cache", expert="reconstruction")
    assert pitch.ids() == logmel.ids() == ["low", "high"]
    for id_, f0 in (("low", 220.0), ("high", 330.0)):
        dist = pitch[id_]["pitch"]
        assert dist.shape == (30, 360) and logmel[id_]["logmel"].shape == (30, 80)  # 0.3 s at 100 frames/s
        np.testing.assert_allclose(dist.sum(-1), 1.0, atol=1e-4)
        assert abs(np.median(distribution_to_hz(dist[5:-5])) / f0 - 1) < 0.03


def _write_config(tmp_path: Path, clips: Path, cache: Path, **extra) -> Path:
    # log-mel cached (it is made in the data loader by default): the cheapest expert that writes a cache
    lines = [f"data: {{source: {{path: {clips}}}}}",
             "experts: [{name: reconstruction, params: {logmel_from: extraction}}]",
             f"targets: {{cache_dir: {cache}, batch_seconds: 1.0, max_batch_size: 2}}", "progress: false"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    cfg = tmp_path / f"targets_{cache.name}.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_resume_after_sigkill_gives_each_example_once_and_the_same_cache(tmp_path):
    clips = write_clips(tmp_path / "clips", 120, low=0.3, high=0.6)
    cfg = _write_config(tmp_path, clips, tmp_path / "cache")
    proc = subprocess.Popen([sys.executable, "-m", "coat", "targets", str(cfg)], env=_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed_with = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        parts = [p for p in (tmp_path / "cache").glob("*/parts/r*") if not p.name.startswith(".")]
        if len(parts) >= 5:
            proc.send_signal(signal.SIGKILL)
            killed_with = len(parts)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    output = proc.stdout.read().decode()
    assert killed_with is not None, f"the run ended before it could be killed:\n{output}"
    (folder,) = (tmp_path / "cache").iterdir()
    assert not (folder / "cache.json").exists(), "killed too late: the run had finished"

    assert coat_main(["targets", str(cfg)]) == 0  # resumes
    resumed = TargetCache.open(folder)
    assert len(resumed) == 120 and len(set(resumed.ids())) == 120 and resumed.ids() == FolderSource(clips).ids()
    assert not (folder / "parts").exists()

    assert coat_main(["targets", str(cfg), f"targets.cache_dir={tmp_path / 'one_go'}"]) == 0
    assert_same_cache(resumed, TargetCache.open(tmp_path / "one_go" / folder.name))


def test_resume_after_a_crash_computes_only_what_is_missing(tmp_path, rms_module):
    """Deterministic companion of the SIGKILL test: an expert that fails after 2 batches leaves finished parts;
    the next run computes only the rest, and the cache equals one built in one go."""
    src = FolderSource(write_clips(tmp_path / "clips", 6, low=0.5, high=0.6))
    with pytest.raises(RuntimeError, match="simulated"):
        compute_targets(src, [build_expert("rms", crash_after_batches=2)], tmp_path / "cache", batch_seconds=1.3,
                        progress=False)
    (folder,) = (tmp_path / "cache").iterdir()
    assert len(list((folder / "parts").glob("r*"))) == 2 and not (folder / "cache.json").exists()
    # what kills at other moments leave behind: a half-written part, a half-saved merge, a merge whose
    # data/ was replaced but whose cache.json was not yet written
    (folder / "parts" / ".tmp-r000-deadbeef").mkdir()
    (folder / ".tmp-data-deadbeef").mkdir()
    (folder / "data").mkdir()
    with pytest.raises(FileNotFoundError, match="unfinished"):
        TargetCache.open(folder)
    again = compute_targets(src, [build_expert("rms")], tmp_path / "cache", batch_seconds=1.3, progress=False)["rms"]
    assert again.path == folder and again.computed == 2 and again.cached == 6
    assert sorted(p.name for p in folder.iterdir()) == ["cache.json", "data", "report.jsonl"]
    one_go = compute_targets(src, [build_expert("rms")], tmp_path / "one_go", progress=False)["rms"]
    assert_same_cache(TargetCache.open(folder), TargetCache.open(one_go.path))


def test_cli_config_errors_name_the_key(tmp_path, capsys):
    clips = write_clips(tmp_path / "clips", 1)
    cfg = _write_config(tmp_path, clips, tmp_path / "cache")
    assert coat_main(["targets", str(cfg), "targets.batch_secnds=3"]) == 2
    assert "batch_secnds" in capsys.readouterr().err
    assert coat_main(["targets", str(cfg), "data.source.audio_colum=x"]) == 2
    assert "data.source.audio_colum" in capsys.readouterr().err
    assert coat_main(["targets", str(cfg), "targets.checks.silence=3"]) == 2
    assert "targets.checks.silence" in capsys.readouterr().err
    assert coat_main(["targets", str(cfg), "experts=[no_such_expert]"]) == 2
    assert "no_such_expert" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_example_config_runs_as_written_on_its_own_synthetic_clips(tmp_path, monkeypatch, capsys):
    """The README's lines: the example config writes its synthetic clips under runs/ on first use, then the same
    clips as an audio folder; nothing lands outside runs/."""
    monkeypatch.chdir(tmp_path)
    example = str(REPO / "configs" / "targets_example.yaml")
    small = ["data.synth.train_size=6", "progress=false"]
    assert coat_main(["targets", example, *small]) == 0
    assert "writing the synthetic train split (6 clips" in capsys.readouterr().out
    data = tmp_path / "runs" / "targets_example" / "data"
    assert len((data / "manifest.jsonl").read_text().splitlines()) == 6
    pitch = TargetCache.open(tmp_path / "runs" / "targets_example" / "cache", expert="pitch")
    assert len(pitch.ids()) == 6
    assert coat_main(["targets", example, *small, f"data.source.path={data.relative_to(tmp_path)}"]) == 0
    assert "writing the synthetic" not in capsys.readouterr().out
    folder_caches = sorted((tmp_path / "runs" / "targets_example" / "cache").glob("pitch-*"))
    assert len(folder_caches) == 2  # the folder source's ids (file paths) differ from the manifest's: its own cache
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_example_config_is_valid():
    from coat.config_io import load_config
    from coat.extraction import ExtractConfig

    config = load_config(ExtractConfig, REPO / "configs" / "targets_example.yaml")
    assert [e.name for e in config.experts] == ["pitch", "reconstruction"]
    assert config.targets.checks.silence_db == -80.0


def test_an_unknown_bench_subject_is_an_error():
    # coat bench targets itself runs in tests/test_benchmarks.py (its sizes, speeds and fidelity figures)
    assert coat_main(["bench", "no_such_subject"]) == 2


def test_bench_without_a_checkout_says_where_benchmarks_live(monkeypatch, capsys):
    from coat.cli import BENCHMARKS, Command, bench

    assert (bench.benchmarks_dir() / "targets.py").is_file()
    monkeypatch.setitem(BENCHMARKS, "ghost", Command("benchmarks.ghost:Config", "benchmarks.ghost:bench", "not there"))
    assert coat_main(["bench", "ghost"]) == 2
    err = capsys.readouterr().err
    assert "ghost.py not found" in err and "source checkout" in err
    assert coat_main(["--help"]) == 0 and "targets" in capsys.readouterr().out


def _accelerate(*args: str, config: Path) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate), "launch", *args, "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
           "no", "-m", "coat", "targets", str(config)]
    return subprocess.run(cmd, env=_env(), cwd=config.parent, capture_output=True, text=True, timeout=300)


def test_accelerate_two_processes_give_the_same_cache(tmp_path):
    # `--multi_gpu` is accelerate's torchrun launcher; without CUDA the processes join a gloo (CPU) group.
    # (`--cpu --num_processes 2` starts a single process in accelerate 1.x unless an MPI hostfile is given.)
    clips = write_clips(tmp_path / "clips", 9)
    multi_cfg = _write_config(tmp_path, clips, tmp_path / "multi")
    single_cfg = _write_config(tmp_path, clips, tmp_path / "single")
    result = _accelerate("--multi_gpu", "--num_processes", "2", config=multi_cfg)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("9/9 examples cached") == 1  # only the main process reports
    assert "(9 computed in this run)" in result.stdout  # the counts cover both processes
    assert coat_main(["targets", str(single_cfg)]) == 0
    (multi,) = (tmp_path / "multi").iterdir()
    (single,) = (tmp_path / "single").iterdir()
    assert multi.name == single.name  # same fingerprint: the process count is not part of it
    assert_same_cache(TargetCache.open(multi), TargetCache.open(single))
    # one shard each: example i went to process i % 2
    assert TargetCache.open(multi).info["examples_by_process"] == {"process 0": 5, "process 1": 4}


@pytest.mark.slow
def test_accelerate_launch_cpu_flag_gives_the_same_cache(tmp_path):
    clips = write_clips(tmp_path / "clips", 5)
    result = _accelerate("--cpu", "--num_processes", "2", config=_write_config(tmp_path, clips, tmp_path / "a"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert coat_main(["targets", str(_write_config(tmp_path, clips, tmp_path / "b"))]) == 0
    (a,), (b,) = (tmp_path / "a").iterdir(), (tmp_path / "b").iterdir()
    assert_same_cache(TargetCache.open(a), TargetCache.open(b))


def test_specs_roundtrip_through_cache_json(tmp_path, rms_module):
    src = ExampleListSource([{"id": "a", "audio": np.full(1600, 0.1, np.float32), "sampling_rate": SR}])
    run = compute_targets(src, [build_expert("rms")], tmp_path / "cache", progress=False)["rms"]
    info = json.loads((run.path / "cache.json").read_text())
    assert info["expert_params"]["params"] == {"hop": 160}
    assert info["fingerprint"].startswith(run.path.name.split("-")[1])
    assert TargetCache.open(run.path).specs == (TargetSpec("rms", SR, 100.0, 1, "regression"),
                                               TargetSpec("peak", SR, None, 1, "regression"))


# --- a cache that checks itself (issue 15) ------------------------------------------------------------------------
def test_a_damaged_part_is_found_and_its_examples_computed_again(tmp_path, rms_module, capsys):
    src = FolderSource(write_clips(tmp_path / "clips", 6, low=0.5, high=0.6))
    with pytest.raises(RuntimeError, match="simulated"):
        compute_targets(src, [build_expert("rms", crash_after_batches=2)], tmp_path / "cache", batch_seconds=1.3,
                        progress=False)
    (folder,) = (tmp_path / "cache").iterdir()
    first, second = sorted((folder / "parts").glob("r*"))
    arrow = first / "targets.arrow"
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])  # truncated (a disk full, a bad copy)
    n_first = len(json.loads((first / "part.json").read_text())["ids"])
    capsys.readouterr()
    again = compute_targets(src, [build_expert("rms")], tmp_path / "cache", batch_seconds=1.3, progress=False)["rms"]
    assert re.search(f"part {first.name} in .* is damaged \\({first.name}/targets.arrow has \\d+ bytes, \\d+ were "
                     "written\\); computing its examples again", capsys.readouterr().out)
    assert again.computed == 2 + n_first and again.cached == 6
    one_go = compute_targets(src, [build_expert("rms")], tmp_path / "one_go", progress=False)["rms"]
    assert_same_cache(TargetCache.open(folder), TargetCache.open(one_go.path))


def _damage(kind: str, data: Path) -> None:
    arrow = next(data.glob("*.arrow"))
    if kind == "deleted":
        import shutil

        shutil.rmtree(data)
    elif kind == "truncated":
        arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    else:  # overwritten in place: same size, NaN bit patterns where the targets are
        raw = bytearray(arrow.read_bytes())
        middle = len(raw) // 2
        raw[middle:middle + 64] = b"\xff" * 64
        arrow.write_bytes(bytes(raw))


@pytest.mark.parametrize("kind, found", [("deleted", "data/ is missing"),
                                         ("truncated", r"data/data-00000-of-00001.arrow has \d+ bytes"),
                                         ("overwritten", "does not match its checksum")])
def test_a_damaged_cache_is_never_reused_and_is_computed_again(tmp_path, rms_module, capsys, kind, found):
    from coat.experts.cache import DamagedCacheError

    src = FolderSource(write_clips(tmp_path / "clips", 5))
    run = compute_targets(src, [build_expert("rms")], tmp_path / "cache", progress=False)["rms"]
    expected = {id_: TargetCache.open(run.path)[id_] for id_ in src.ids()}
    _damage(kind, run.path / "data")
    with pytest.raises(DamagedCacheError, match=found):
        TargetCache.open(run.path, verify="full")
    capsys.readouterr()
    again = compute_targets(src, [build_expert("rms")], tmp_path / "cache", progress=False)["rms"]
    assert not again.reused and again.computed == 5 and again.path == run.path
    assert re.search(f"the cache in .* is damaged \\(.*{found}.*\\); computing it again", capsys.readouterr().out)
    cache = TargetCache.open(run.path, verify="full")
    for id_, targets in expected.items():
        for name, value in targets.items():
            np.testing.assert_array_equal(cache[id_][name], value)


def test_an_all_bad_or_empty_source_gives_a_cache_that_opens(tmp_path, rms_module, capsys):
    silent = ExampleListSource([{"id": f"s{i}", "audio": np.zeros(8000, np.float32), "sampling_rate": SR}
                                for i in range(2)])
    run = compute_targets(silent, [build_expert("rms")], tmp_path / "cache", progress=False)["rms"]
    cache = TargetCache.open(run.path, verify="full")
    assert len(cache) == 0 and cache.ids() == []
    with pytest.raises(MissingTargetsError, match=r"'s0' \(silent\), 's1' \(silent\)"):
        cache.get(["s0", "s1"])
    empty = compute_targets(ExampleListSource([]), [build_expert("rms")], tmp_path / "empty", progress=False)["rms"]
    assert len(TargetCache.open(empty.path)) == 0
    (tmp_path / "no_audio").mkdir()
    cfg = _write_config(tmp_path, tmp_path / "no_audio", tmp_path / "cache2")
    assert coat_main(["targets", str(cfg)]) == 2
    assert "has no examples" in capsys.readouterr().err


def test_a_fifo_as_an_audio_path_is_refused_not_waited_on(tmp_path):
    """`coat targets` on a manifest naming a FIFO: reported as unreadable, and the run ends (a subprocess, so that a
    regression shows as a failure rather than a hung test session)."""
    clips = write_clips(tmp_path / "clips", 2)
    os.mkfifo(clips / "pipe.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": name, "audio": f"clips/{name}"}) + "\n"
                                for name in ("clip000.wav", "pipe.wav", "clip001.wav")))
    cfg = _write_config(tmp_path, manifest, tmp_path / "cache")
    done = subprocess.run([sys.executable, "-m", "coat", "targets", str(cfg)], env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (folder,) = (tmp_path / "cache").iterdir()
    (report,) = [json.loads(line) for line in (folder / "report.jsonl").read_text().splitlines()]
    assert report["id"] == "pipe.wav" and report["reason"] == "unreadable"
    assert "not a regular file (a FIFO); refused" in report["detail"]
    assert TargetCache.open(folder).ids() == ["clip000.wav", "clip001.wav"]
