"""The gpuaug command line: info, preview and argument errors."""

import subprocess
import sys

import pytest
import torch
from torchvision.io import decode_image, write_png

import gpuaug as ga
from gpuaug import _ext
from gpuaug.cli import grid_shape, main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_info_names_versions_and_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("gpuaug", "torch", "torchvision", "numpy", "python", "cuda devices", "backends", ga.__version__):
        assert word in out
    for name in ga.available_backends():
        assert f"{name}: " in out


def test_preview_bundled_photos(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["preview", "-o", str(out), "--n", "3", "--size", "48"]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    grid = decode_image(str(out))
    assert grid.dtype == torch.uint8 and tuple(grid.shape) == (3, *grid_shape(3, 3, 48))


def test_preview_given_image(tmp_path):
    src, out = tmp_path / "in.png", tmp_path / "grid.png"
    write_png(torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8), str(src))
    assert main(["preview", str(src), "-o", str(out), "--n", "2", "--size", "32", "--seed", "3"]) == 0
    assert tuple(decode_image(str(out)).shape) == (3, *grid_shape(1, 2, 32))


def test_preview_is_reproducible_and_augments(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for path in (a, b):
        main(["preview", "-o", str(path), "--n", "4", "--size", "32"])
    assert a.read_bytes() == b.read_bytes()
    grid = decode_image(str(a))
    tiles = [grid[:, 2:34, 2 + 34 * j:34 + 34 * j] for j in range(1, 5)]  # augmented tiles of the first row
    assert len({t.float().sum().item() for t in tiles}) > 1  # per-sample random, not one parameter set


def test_preview_missing_image_exits_1_without_traceback(tmp_path):
    """Through the real entry point in a subprocess: exit status and stderr as a user sees them."""
    path = tmp_path / "missing.jpg"
    proc = subprocess.run([sys.executable, "-m", "gpuaug.cli", "preview", str(path), "-o", str(tmp_path / "g.png")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1
    assert f"image not found: {path}" in proc.stderr and "Traceback" not in proc.stderr


def test_preview_invalid_image_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"not an image")
    assert main(["preview", str(path), "-o", str(tmp_path / "g.png")]) == 1
    err = capsys.readouterr().err
    assert "cannot decode" in err and str(path) in err


def test_preview_reads_16_bit_pngs_and_animated_gifs(tmp_path):
    """Decoded as gpuaug.data decodes them: 16-bit PNGs scaled to uint8, a GIF's first frame."""
    from PIL import Image

    wide = tmp_path / "wide.png"
    Image.fromarray((torch.arange(40 * 60).view(40, 60) * 27).numpy().astype("uint16")).save(wide)
    frames = [Image.new("RGB", (60, 40), color) for color in ((255, 0, 0), (0, 0, 255))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    for path in (wide, gif):
        assert main(["preview", str(path), "-o", str(tmp_path / "g.png"), "--n", "2", "--size", "32"]) == 0


def test_a_bad_backend_in_the_environment_is_said_not_raised(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("GPUAUG_BACKEND", "bogus")
    assert main(["info"]) == 0
    assert "none: every Pipeline raises: unknown backend 'bogus'" in capsys.readouterr().out
    assert main(["preview", "-o", str(tmp_path / "g.png"), "--n", "1", "--size", "16"]) == 1
    assert "unknown backend 'bogus'" in capsys.readouterr().err


def test_preview_unwritable_output(tmp_path, capsys):
    assert main(["preview", "-o", str(tmp_path / "missing-dir" / "g.png"), "--n", "1", "--size", "16"]) == 1
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    ([], "required"),
    (["frobnicate"], "invalid choice"),
    (["preview"], "-o/--output"),
    (["preview", "-o", "x.png", "--n", "0"], "positive integer"),
    (["bench", "--batch-size", "-3"], "positive integer"),
    (["bench", "--pipelines", "nope"], "invalid choice"),
    (["bench", "--libraries", "nope"], "invalid choice"),
    (["bench", "--device", "tpu"], "invalid choice"),
    (["bench", "--warmup", "-1"], "non-negative integer"),
    (["bench", "--warmup-seconds", "nan"], "finite non-negative number"),
    (["bench-loader", "--max-seconds", "nan"], "finite positive number"),
    (["bench-loader", "--max-seconds", "0"], "finite positive number"),
])
def test_bad_arguments_exit_2_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_cuda_without_a_gpu(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--device", "cuda"])
    assert exc.value.code == 2 and "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("has_cuda, words", [(True, "(with CUDA)"), (False, "(without CUDA)")])
def test_build_ext_says_whether_the_build_has_cuda(has_cuda, words, monkeypatch, capsys):
    """What the build says it has, not whether this machine has a GPU (a CUDA build works without one)."""
    monkeypatch.setattr(_ext, "build", lambda verbose, with_cuda: has_cuda)
    assert main(["build-ext", "--cuda"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(words)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and ga.__version__ in capsys.readouterr().out
