"""lmms-eval's model ``coat``: a base LALM with a CoAT adapter (or without), for the harness users already run.

    pip install "coat-lalm[lmms-eval]"
    lmms-eval --model coat --model_args pretrained=Qwen/Qwen2-Audio-7B-Instruct,adapter=runs/x/adapter \\
        --tasks mmau_test_mini --batch_size 8

pyproject.toml registers it in the ``lmms_eval.models`` entry-point group (:func:`manifest`). ``model_args``:
``pretrained`` (a hub id or folder, loaded as ``coat eval`` loads it), ``adapter`` (a folder written by
``CoATModel.save_pretrained``; none: the base model alone), ``dtype``, ``device`` (or lmms-eval's ``--device``; none:
cuda if available), ``batch_size`` (or ``--batch_size``), ``max_new_tokens`` (when a task's ``generation_kwargs``
give none). One process: no data parallelism across GPUs.

- ``generate_until``: the task's text as the user turn after its audio(s), in the model's chat template (what ``coat
  eval`` and training do), batched ``generate()``, cut at the task's ``until`` strings.
- ``loglikelihood``: the continuation scored as ``coat eval``'s ``scoring: likelihood`` scores an option
  (:mod:`coat.evaluation.likelihood`): lmms-eval's leading delimiter (``" "`` + choice) is dropped and the text is
  scored as the assistant's answer closed by the template's turn end, every continuation of one request's context
  from one prefill. It returns ``(negative log-likelihood, is_greedy)``: the NLL, summed over the continuation's
  tokens, because lmms-eval's multiple-choice scoring (and its ``*_ppl`` tasks) pick the smallest value, as for its
  models that return a loss; so its ``acc`` is the highest summed log-probability and its ``acc_norm`` the highest per
  character of the choice (per byte for ASCII: ``coat eval``'s ``likelihood_accuracy``). lmms-eval's ``perplexity``
  aggregation assumes the other sign; no audio task uses it.

Audio comes from the task's ``doc_to_visual`` as lmms-eval's audio tasks give it: ``{"array", "sampling_rate"}``
dicts (a ``datasets`` Audio value), or file paths.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest

from coat.data.prompts import prompt_text
from coat.data.sources import decode_audio, resample
from coat.evaluation.likelihood import score_options


def _alias_filelock_api() -> None:
    """lmms-eval 0.7.1-0.7.3 patch ``filelock._api.FileLockMeta`` before every run (``_enable_reentrant_filelocks``)
    and stop with ``No module named 'filelock._api'`` under filelock 4, which keeps the same classes in
    ``filelock._core``: name them under the old module, so lmms-eval's patch applies as written."""
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("filelock._api") is not None:
        return
    try:
        from filelock._core._lock import BaseFileLock
        from filelock._core._singleton import FileLockMeta
    except ImportError:  # another layout: leave it to lmms-eval
        return
    module = types.ModuleType("filelock._api", "filelock 4's lock classes under their filelock 3 module name")
    module.BaseFileLock, module.FileLockMeta = BaseFileLock, FileLockMeta
    sys.modules["filelock._api"] = module


_alias_filelock_api()  # this module is imported when lmms-eval loads its models, before any run starts


def _carried(pair: tuple[float, bool]):
    """The ``(value, is_greedy)`` pair as lmms-eval's evaluator keeps it: since 0.7 it turns every response that is
    neither a string nor a ``GenerationResult`` into its ``str()`` (``api/instance.py``,
    ``unwrap_generation_output``), and its multiple-choice scoring then fails on the string; a ``GenerationResult``'s
    content is passed through unchanged. Older lmms-eval versions take the pair itself."""
    try:
        from lmms_eval.api.instance import GenerationResult, unwrap_generation_output  # noqa: F401 - 0.7 and later
    except ImportError:
        return pair
    return GenerationResult(text=pair)


def manifest() -> ModelManifest:
    """The entry point's payload: lmms-eval's model id ``coat`` is :class:`CoATLMMs`."""
    return ModelManifest(model_id="coat", simple_class_path="coat.lmms_eval_model.CoATLMMs")


class CoATLMMs(lmms):
    """A base LALM (and a CoAT adapter) behind lmms-eval's ``lmms`` interface."""

    is_simple = True

    def __init__(self, pretrained: str, adapter: str | None = None, dtype: str = "auto", device: str | None = None,
                 batch_size: int | str = 1, max_new_tokens: int = 128, max_batch_size: int | None = None,
                 **unknown) -> None:
        super().__init__()
        if unknown:
            raise ValueError(f"coat: unknown model_args {sorted(unknown)}; it takes pretrained, adapter, dtype, "
                             "device, batch_size, max_new_tokens")
        import torch

        from coat.loading import ModelConfig, load_model_and_processor
        from coat.model import CoATModel

        base, self.processor = load_model_and_processor(ModelConfig(name_or_path=pretrained, dtype=dtype))
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        base.to(self._device).eval()
        if base.generation_config.pad_token_id is None:
            base.generation_config.pad_token_id = self.processor.tokenizer.pad_token_id
        self.model = CoATModel.from_pretrained(base, adapter).eval() if adapter else base
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 1  # "auto": one at a time
        self.max_new_tokens = int(max_new_tokens)
        self.sampling_rate = self.processor.feature_extractor.sampling_rate

    # ------------------------------------------------------------------ inputs
    def _doc(self, task: str, split: str, doc_id: int):
        return self.task_dict[task][split][doc_id]

    def _audios(self, doc_to_visual, doc) -> list[np.ndarray]:
        """The doc's audios as ``(samples,)`` float32 arrays at the processor's rate."""
        audios = []
        for value in doc_to_visual(doc) or []:
            if isinstance(value, dict) and "array" in value:
                array, rate = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
                array = array.mean(0) if array.ndim == 2 else array
            elif isinstance(value, str):
                array, rate = decode_audio(value)
            else:
                raise ValueError(f"coat: a task's doc_to_visual gave {type(value).__name__}; an audio model takes "
                                 "{'array', 'sampling_rate'} dicts or audio file paths")
            audios.append(resample(array, rate, self.sampling_rate))
        return audios

    # ------------------------------------------------------------------ lmms-eval's interface
    def generate_until(self, requests) -> list[str]:
        """Batched generation, ``batch_size`` requests at a time; each answer cut at its request's ``until``."""
        answers: list[str] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = [request.args for request in requests[start:start + self.batch_size]]
            answers += self._generate([(context, dict(kwargs or {}), self._audios(to_visual, self._doc(t, s, d)))
                                       for context, kwargs, to_visual, d, t, s in chunk])
        return answers

    def _generate(self, chunk) -> list[str]:
        import torch

        by_settings = defaultdict(list)  # one generate() call per set of generation settings
        for i, (_, kwargs, _) in enumerate(chunk):
            by_settings[repr(sorted(kwargs.items()))].append(i)
        out = [""] * len(chunk)
        for rows in by_settings.values():
            kwargs = chunk[rows[0]][1]
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            texts = [prompt_text(self.processor, chunk[i][0], len(chunk[i][2])) for i in rows]
            audios = [a for i in rows for a in chunk[i][2]]
            self.processor.tokenizer.padding_side = "left"
            inputs = (self.processor(text=texts, audio=audios, sampling_rate=self.sampling_rate, padding=True,
                                     return_tensors="pt") if audios else
                      self.processor.tokenizer(texts, padding=True, return_tensors="pt"))
            inputs = {k: v.to(self._device) if hasattr(v, "to") else v for k, v in dict(inputs).items()}
            temperature = float(kwargs.get("temperature") or 0)
            sample = {"do_sample": True, "temperature": temperature, "top_p": kwargs.get("top_p") or 1.0} \
                if temperature > 0 else {"do_sample": False}
            with torch.no_grad():
                sequences = self.model.generate(**inputs, max_new_tokens=int(kwargs.get("max_new_tokens")
                                                                             or self.max_new_tokens),
                                                num_beams=int(kwargs.get("num_beams") or 1), **sample)
            sequences = sequences if isinstance(sequences, torch.Tensor) else sequences.sequences
            decoded = self.processor.batch_decode(sequences[:, inputs["input_ids"].shape[1]:],
                                                  skip_special_tokens=True)
            for i, text in zip(rows, decoded, strict=True):
                for stop in until:
                    text = text.split(stop)[0] if stop else text
                out[i] = text.strip()
        return out

    def loglikelihood(self, requests) -> list:
        """``(negative log-likelihood, is_greedy)`` of each request's continuation (see the module docstring): the
        requests of one context (a question's choices) share one prefill, ``batch_size`` contexts per call."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            context, _, _, doc_id, task, split = request.args
            groups[(task, split, doc_id, context)].append(i)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        keys = list(groups)
        for start in range(0, len(keys), self.batch_size):
            batch = keys[start:start + self.batch_size]
            contexts, audios, options = [], [], []
            for task, split, doc_id, context in batch:
                doc = self._doc(task, split, doc_id)
                first = requests[groups[(task, split, doc_id, context)][0]].args
                contexts.append(context)
                found = self._audios(first[2], doc)
                audios.append(found if found else None)
                options.append([self._continuation(requests[i].args[1], doc)
                                for i in groups[(task, split, doc_id, context)]])
            scores = score_options(self.model, self.processor, contexts, audios, options, self._device)
            for key, row in zip(batch, scores, strict=True):
                for i, score in zip(groups[key], row, strict=True):
                    results[i] = _carried((-score.logprob, score.greedy))
        return results

    @staticmethod
    def _continuation(continuation, doc) -> str:
        text = continuation if isinstance(continuation, str) else continuation(doc)  # doc_to_target
        return str(text).lstrip()  # lmms-eval's target delimiter: the answer starts the assistant's turn

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("coat: multi-round generation is not supported; use generate_until tasks")
