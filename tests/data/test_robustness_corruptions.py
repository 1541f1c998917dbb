"""The CIFAR-10-C corruptions and the generator that writes their file layout."""
import colorsys
import json

import numpy as np
import pytest
from scipy import ndimage

from harness.data import corrupt, corruptions
from harness.data.corruptions import CORRUPTIONS


def images(count=3, size=32, channels=3, seed=0):
    """Smooth random images with edges, so blurs, edges and noise all have work to do."""
    rng = np.random.default_rng(seed)
    base = ndimage.zoom(rng.random((count, size // 4, size // 4, channels)), (1, 4, 4, 1),
                        order=0)
    return (np.clip(base * 0.8 + 0.1 * rng.random(base.shape), 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("channels", [3, 1])
def test_every_corruption_keeps_the_layout_is_seeded_and_changes_the_image(channels):
    size = 32 if channels == 3 else 8  # grey: the digits' 8x8
    clean = images(size=size, channels=channels)
    for name in CORRUPTIONS:
        for severity in (1, 5):
            out = corrupt.corrupt(clean, name, severity, np.random.default_rng(1))
            assert out.dtype == np.uint8 and out.shape == clean.shape, name
            again = corrupt.corrupt(clean, name, severity, np.random.default_rng(1))
            assert np.array_equal(out, again), name
        assert not np.array_equal(out, clean), name


def hsv_round_trip(rgb, change):
    out = np.empty_like(rgb)
    for index in np.ndindex(rgb.shape[:-1]):
        h, s, v = colorsys.rgb_to_hsv(*rgb[index])
        out[index] = colorsys.hsv_to_rgb(*change(h, s, v))
    return out


def test_brightness_and_saturate_equal_the_hsv_round_trip():
    rng = np.random.default_rng(0)
    rgb = rng.random((2, 5, 5, 3))
    rgb[0, 0, 0] = 0.0  # black
    rgb[0, 0, 1] = 0.4  # grey: hue 0, as in skimage
    for severity in range(1, 6):
        c = [.05, .1, .15, .2, .3][severity - 1]
        expected = hsv_round_trip(rgb, lambda h, s, v: (h, s, min(v + c, 1)))
        assert np.allclose(corruptions.brightness(rgb, severity, rng) / 255, expected)
        scale, shift = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
        expected = hsv_round_trip(rgb, lambda h, s, v: (h, min(max(s * scale + shift, 0), 1),
                                                        v))
        assert np.allclose(corruptions.saturate(rgb, severity, rng) / 255, expected)


def test_motion_blur_is_imagemagicks_one_sided_kernel():
    radius, sigma = 3, 1.5
    impulse = np.zeros((2, 9, 9, 1))
    impulse[:, 6, 6] = 1.0
    out = corruptions._motion_blur(impulse, radius, sigma, np.array([0.0, 90.0]))
    taps = np.exp(-np.arange(7) ** 2 / (2 * sigma ** 2))
    taps /= taps.sum()
    # angle 0: pixel (y, x) averages x, x+1, ..., so the impulse trails to the left
    assert np.allclose(out[0, 6, :7, 0], taps[::-1])
    # angle 90: it trails upwards; all weight stays in the image (edges are repeated)
    assert np.allclose(out[1, :7, 6, 0], taps[::-1])
    assert np.isclose(out[1].sum(), 1.0)


def test_clipped_zoom_equals_scipy_zoom_at_32_pixels():
    x = np.random.default_rng(0).random((2, 32, 32, 3))
    for factor in [*np.arange(1, 1.26, 0.01), 1.75, 2.25]:
        crop = int(np.ceil(32 / factor))
        top = (32 - crop) // 2
        zoomed = ndimage.zoom(x[:, top:top + crop, top:top + crop], (1, factor, factor, 1),
                              order=1)
        trim = (zoomed.shape[1] - 32) // 2
        expected = zoomed[:, trim:trim + 32, trim:trim + 32]
        assert np.allclose(corruptions._clipped_zoom(x, factor), expected)


def test_defocus_disk_is_the_blurred_17x17_disk_cropped():
    radius, alias_blur = 1.5, 0.1
    span = np.arange(-8, 9)
    disk = (span[:, None] ** 2 + span[None, :] ** 2 <= radius ** 2).astype(float)
    disk /= disk.sum()
    taps = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * alias_blur ** 2))
    full = ndimage.correlate(disk, np.outer(taps, taps) / taps.sum() ** 2, mode="mirror")
    kernel = corruptions._disk(radius, alias_blur)
    assert kernel.shape == (5, 5) and np.isclose(kernel.sum(), 1)
    x = np.random.default_rng(0).random((12, 12))
    assert np.allclose(ndimage.correlate(x, kernel, mode="mirror"),
                       ndimage.correlate(x, full, mode="mirror"))


def test_canny_marks_a_step_and_equalize_hist_spreads_the_cdf():
    step = np.zeros((1, 8, 8), np.uint8)
    step[:, :, 4:] = 200
    edges = corruptions._canny(step, 50, 150)
    assert edges[0].any(axis=0).tolist() == [False, False, False, True, False, False, False,
                                             False]
    values = np.array([[[0, 0], [1, 2]]], np.uint8)
    # cdf above the first bin: (2, 3, 4) - 2 over 4 - 2 images -> 0, 127.5, 255
    assert corruptions._equalize_hist(values).tolist() == [[[0, 0], [128, 255]]]
    assert corruptions._equalize_hist(np.full((1, 2, 2), 7, np.uint8)).max() == 7


def test_glass_blur_copies_an_up_left_neighbour():
    """With sigma ~ 0 the blurs vanish: every pixel holds its own value or that of its upper,
    left or upper-left neighbour (the original's 'swap' copies, never exchanges)."""
    x = np.arange(64, dtype=float).reshape(1, 8, 8, 1) / 255
    out = np.round(corruptions.glass_blur(x, 1, np.random.default_rng(0)))[0, :, :, 0]
    original = np.arange(64).reshape(8, 8)
    for h in range(2, 8):
        for w in range(2, 8):
            assert out[h, w] in {original[h - dy, w - dx] for dy in (0, 1) for dx in (0, 1)}
    assert len(np.unique(out)) < 64


def test_generator_cli_writes_the_cifar_c_layout(tmp_path, capsys):
    clean = images(count=4)
    np.savez(tmp_path / "set.npz", x_train=clean, y_train=np.arange(4), x_test=clean,
             y_test=np.array([3, 1, 4, 1]))
    out = tmp_path / "set-c"
    corrupt.main(["--npz", str(tmp_path / "set.npz"), "--output_dir", str(out),
                  "--corruptions", "contrast,gaussian_noise"])
    assert "generated, not the published" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [corrupt.MARKER, "contrast.npy",
                                                     "gaussian_noise.npy", "labels.npy"]
    assert np.load(out / "labels.npy").tolist() == [3, 1, 4, 1] * 5
    noise = np.load(out / "gaussian_noise.npy")
    assert noise.dtype == np.uint8 and noise.shape == (20, 32, 32, 3)
    index = list(CORRUPTIONS).index("gaussian_noise")
    for severity in range(1, 6):
        rng = np.random.default_rng([0, index, severity, 0])
        block = noise[(severity - 1) * 4:severity * 4]
        assert np.array_equal(block, corrupt.corrupt(clean, "gaussian_noise", severity, rng))
    marker = json.loads((out / corrupt.MARKER).read_text())
    assert marker["generated_by"] == "harness.data.corrupt" and "not the published" in \
        marker["note"]


def test_generator_keeps_grey_images_grey(tmp_path):
    grey = images(count=2, size=8, channels=1)[..., 0]
    np.savez(tmp_path / "grey.npz", x_test=grey, y_test=np.array([0, 1]))
    corrupt.main(["--npz", str(tmp_path / "grey.npz"), "--output_dir", str(tmp_path / "c"),
                  "--corruptions", "saturate", "--limit", "1"])
    assert np.load(tmp_path / "c" / "saturate.npy").shape == (5, 8, 8, 1)


def test_limit_draws_from_every_class_of_a_class_sorted_test_split(tmp_path):
    labels = np.repeat(np.arange(4), 25)  # stored class by class
    np.savez(tmp_path / "sorted.npz", x_test=images(count=100, size=8), y_test=labels)
    corrupt.main(["--npz", str(tmp_path / "sorted.npz"), "--output_dir", str(tmp_path / "c"),
                  "--corruptions", "saturate", "--limit", "20"])
    drawn = np.load(tmp_path / "c" / "labels.npy")[:20]
    assert set(drawn.tolist()) == {0, 1, 2, 3} and drawn.tolist() == sorted(drawn.tolist())


def test_generator_rejects_unknown_corruptions(tmp_path):
    np.savez(tmp_path / "set.npz", x_test=images(count=1), y_test=np.array([0]))
    code = corrupt.main(["--npz", str(tmp_path / "set.npz"), "--output_dir",
                         str(tmp_path / "c"), "--corruptions", "fire"])
    assert code == 2 and not (tmp_path / "c").exists()
