"""spacetime convert: a transformers checkpoint folder -> a spacetime checkpoint that classify eval and
load_converted read, with the original's output; bad sources are refused by name."""

import json

import pytest
import torch
from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VivitConfig, VivitModel

from spacetime.cli import main
from spacetime.interop.convert import convert, load_converted
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


def test_convert_an_encoder_and_bad_sources(tmp_path, capsys):
    config = VivitConfig(image_size=16, num_frames=4, tubelet_size=[2, 8, 8], **SMALL)
    original = randomize(VivitModel(config))
    original.save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), "--out", str(tmp_path / "st")]) == 0
    converted = load_converted(tmp_path / "st" / "model.safetensors")
    x = clip(config)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), original(x).last_hidden_state, atol=1e-5, rtol=1e-5)
    assert main(["convert", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "hf" / "model.safetensors")
    del weights["embeddings.patch_embeddings.projection.bias"]
    save_file(weights, tmp_path / "hf" / "model.safetensors")
    assert main(["convert", str(tmp_path / "hf"), "--out", str(tmp_path / "z")]) == 2  # one line naming the key
    assert "missing keys ['embeddings.patch_embeddings.projection.bias']" in capsys.readouterr().err
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="from_transformers converts"):
        convert(tmp_path / "bert", tmp_path / "y")
    from spacetime.classify.evaluate import evaluate_checkpoint

    with pytest.raises(ValueError, match="holds a 'converted_video_encoder' checkpoint; expected 'video_classifier'"):
        evaluate_checkpoint(tmp_path / "st" / "model.safetensors")  # an encoder has no classes to evaluate


def test_convert_a_torchvision_swin_file_and_evaluate_it(tmp_path, tv, capsys, monkeypatch):
    from spacetime.interop.torchvision import TORCHVISION_ARCHITECTURES
    from tests.interop.test_torchvision import randomize as randomize_swin

    kwargs = {"patch_size": [2, 4, 4], "embed_dim": 16, "depths": [2, 2], "num_heads": [1, 2],
              "window_size": [8, 7, 7], "num_classes": 400}  # swin3d_t's layout, its window and head, two stages
    original = randomize_swin(tv.SwinTransformer3d(**kwargs))
    torch.save(original.state_dict(), tmp_path / "swin.pth")  # what torchvision's weights URL serves
    assert main(["convert", str(tmp_path / "swin.pth"), "--out", str(tmp_path / "st")]) == 2  # no --arch
    assert "arch: a torchvision weights file holds no config" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"does not match the config's SwinTransformer3d: missing keys"):
        convert(tmp_path / "swin.pth", tmp_path / "st", arch="swin3d_t")  # a file that is not swin3d_t's
    monkeypatch.setitem(TORCHVISION_ARCHITECTURES, "tiny-test", kwargs)  # the converter's table of builders
    names = tmp_path / "labels.txt"
    names.write_text("one\ntwo\n")
    with pytest.raises(ValueError, match="labels: .* names 2 classes; the model has 400"):
        convert(tmp_path / "swin.pth", tmp_path / "st", arch="tiny-test", labels=names)
    names.write_text("\n".join(f"action {i}" for i in range(400)) + "\n")
    path = convert(tmp_path / "swin.pth", tmp_path / "st", arch="tiny-test", labels=names)
    meta = json.loads((tmp_path / "st" / "config.json").read_text())
    assert meta["classes"][:2] == ["action 0", "action 1"] and meta["input"] == {"frames": 32, "size": 224}
    converted = load_converted(tmp_path / "st")
    x = torch.randn(1, 3, 6, 30, 34)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), original(x), atol=1e-5, rtol=1e-5)
    gen = torch.Generator().manual_seed(0)
    for name in ("action 3", "action 7"):
        for i in range(2):
            write_gif(tmp_path / "data" / name / f"{i}.gif", torch.rand(4, 20, 20, 3, generator=gen).numpy())
    assert main(["classify", "eval", str(path), "--data", str(tmp_path / "data"), "--frames", "4",
                 "--out", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "eval_T4.json").read_text())
    assert result["classes"] == ["action 3", "action 7"] and sum(map(sum, result["confusion"])) == 4
    from spacetime.classify.data import ClassFolders, normalize

    folders = ClassFolders(tmp_path / "data", 4, 224, grayscale=False)  # the weights' input size
    with torch.no_grad():
        chosen = original(normalize(folders.clips, *meta["normalize"]))[:, [3, 7]].argmax(1)
    assert result["accuracy"] == pytest.approx((chosen == folders.labels).float().mean().item())


@pytest.mark.parametrize("kind", ["adapter", "temporal"])
def test_convert_a_diffusers_folder(tmp_path, kind):
    from diffusers import MotionAdapter, TransformerTemporalModel

    from tests.interop.test_diffusers import ADAPTER, TEMPORAL, TEMPORALS
    from tests.interop.test_diffusers import randomize as randomize_diffusers

    original = randomize_diffusers(MotionAdapter(**ADAPTER) if kind == "adapter" else
                                   TransformerTemporalModel(**TEMPORAL, **TEMPORALS[2]))
    original.save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), "--out", str(tmp_path / "st")]) == 0
    converted = load_converted(tmp_path / "st" / "model.safetensors")
    module = converted.down_blocks[1].motion_modules[0] if kind == "adapter" else converted
    reference = original.down_blocks[1].motion_modules[0] if kind == "adapter" else original
    x = torch.randn(2 * 5, reference.in_channels, 3, 4)
    with torch.no_grad():
        out, ref = module(x, num_frames=5), reference(x, num_frames=5)
    torch.testing.assert_close(getattr(out, "sample", out), getattr(ref, "sample", ref), atol=1e-5, rtol=1e-5)
    from spacetime.interop.diffusers import to_diffusers_state_dict

    back, state = to_diffusers_state_dict(converted), original.state_dict()
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)  # the tables too
    with pytest.raises(ValueError, match="labels: .* is a diffusers"):
        convert(tmp_path / "hf", tmp_path / "x", labels=tmp_path / "hf" / "config.json")
    with pytest.raises(ValueError, match="arch is for a torchvision weights file"):
        convert(tmp_path / "hf", tmp_path / "x", arch="swin3d_t")
    (tmp_path / "hf" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no diffusion_pytorch_model.safetensors"):
        convert(tmp_path / "hf", tmp_path / "x")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"a weights file must end in one of"):
        convert(tmp_path / "notes.txt", tmp_path / "x")
