"""spacetime convert: a transformers checkpoint folder -> a spacetime checkpoint that classify eval and
load_converted read, with the original's output; bad sources are refused by name."""

import json

import pytest
import torch
from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VivitConfig, VivitModel

from spacetime.cli import main
from spacetime.interop.convert import load_converted
from spacetime.io.video import write_gif
from tests.interop.test_transformers import SMALL, clip, output, randomize


def test_convert_a_classifier_and_evaluate_it_on_a_folder(tmp_path, capsys):
    config = VideoMAEConfig(image_size=16, patch_size=8, num_frames=4, tubelet_size=2, num_labels=3, **SMALL,
                            id2label={0: "left", 1: "right", 2: "still"}, label2id={"left": 0, "right": 1, "still": 2})
    original = randomize(VideoMAEForVideoClassification(config))
    original.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5, 0.5],
                                                                         "image_std": [0.25, 0.25, 0.25]}))
    assert main(["convert", str(tmp_path / "hf"), "--out", str(tmp_path / "st")]) == 0
    printed = capsys.readouterr().out
    assert "videomae (3 classes" in printed and "spacetime classify eval" in printed
    meta = json.loads((tmp_path / "st" / "config.json").read_text())
    assert meta["classes"] == ["left", "right", "still"] and meta["normalize"] == [[0.5] * 3, [0.25] * 3]
    converted = load_converted(tmp_path / "st")
    x = clip(config)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), output(original, x), atol=1e-5, rtol=1e-5)
    gen = torch.Generator().manual_seed(0)  # a folder of two of the model's classes, three clips each
    for name in ("left", "still"):
        for i in range(3):
            write_gif(tmp_path / "data" / name / f"{i}.gif", torch.rand(4, 16, 16, 3, generator=gen).numpy())
    assert main(["classify", "eval", str(tmp_path / "st" / "model.safetensors"), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "eval_T4.json").read_text())
    assert result["classes"] == ["left", "still"] and sum(map(sum, result["confusion"])) == 6
    # the accuracy is the original's, on the same clips with the processor's normalisation, among those two classes
    from spacetime.classify.data import ClassFolders

    folders = ClassFolders(tmp_path / "data", 4, 16, grayscale=False)
    with torch.no_grad():
        pixels = ((folders.clips - 0.5) / 0.25).permute(0, 2, 1, 3, 4)  # (n, t, c, h, w), normalised
        chosen = original(pixels).logits[:, [0, 2]].argmax(1)
    assert result["accuracy"] == pytest.approx((chosen == folders.labels).float().mean().item())
    with pytest.raises(ValueError, match="data: a converted checkpoint .* has no data of its own"):
        from spacetime.classify.evaluate import evaluate_checkpoint

        evaluate_checkpoint(tmp_path / "st" / "model.safetensors")
    (tmp_path / "data" / "jump").mkdir()
    write_gif(tmp_path / "data" / "jump" / "0.gif", torch.rand(4, 16, 16, 3, generator=gen).numpy())
    with pytest.raises(ValueError, match=r"class folders \['jump'\] are not classes of the checkpoint"):
        evaluate_checkpoint(tmp_path / "st" / "model.safetensors", data=str(tmp_path / "data"))


def test_convert_an_encoder_and_bad_sources(tmp_path):
    config = VivitConfig(image_size=16, num_frames=4, tubelet_size=[2, 8, 8], **SMALL)
    original = randomize(VivitModel(config))
    original.save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), "--out", str(tmp_path / "st")]) == 0
    converted = load_converted(tmp_path / "st" / "model.safetensors")
    x = clip(config)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), original(x).last_hidden_state, atol=1e-5, rtol=1e-5)
    assert main(["convert", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="from_transformers converts"):
        from spacetime.interop.convert import convert

        convert(tmp_path / "bert", tmp_path / "y")
    from spacetime.classify.evaluate import evaluate_checkpoint

    with pytest.raises(ValueError, match="holds a 'converted_video_encoder' checkpoint; expected 'video_classifier'"):
        evaluate_checkpoint(tmp_path / "st" / "model.safetensors")  # an encoder has no classes to evaluate
