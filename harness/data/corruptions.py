"""The 19 corruptions of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019), with the parameters of
Hendrycks' `make_cifar_c.py` (the 32x32 settings, not the ImageNet-C ones), vectorised over a
batch of images.

Every function takes float images `x` [N, H, W, C] on [0, 1] (C = 3, or 1 for grey sets), a
severity 1-5 and a numpy Generator, and returns the corrupted batch on the 0-255 scale, as
Hendrycks' functions do; `harness.data.corrupt` then casts with `np.uint8` (truncation), as he
did. Where his code writes the image side (32) we use the image's own side, so other sizes
(the 8x8 digits) work; all other parameters are his, in pixels.

His tools are replaced by numpy/scipy equivalents, each said where it is used: skimage's
`gaussian` (= scipy's gaussian_filter, mode 'nearest', truncate 4), skimage's HSV round trip (in
closed form), OpenCV's filters, Canny edges, distance transform and histogram equalisation, and
ImageMagick's motion blur (the kernel and offsets of its MotionBlurImage). The frost photos his
code blends in are not redistributable here; a procedural frost texture stands in (see
`frost_texture`), so `frost` is the one corruption that only approximates his. Grey images pass
through the colour operations as their ITU-R 601 luma.
"""
import io
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as OpenCV's RGB2GRAY and PIL's 'L'


# ---------------------------------------------------------------- helpers

def _spatial_gaussian(x: np.ndarray, sigma: float, mode: str = "nearest",
                      truncate: float = 4.0) -> np.ndarray:
    """skimage.filters.gaussian (its defaults: mode 'nearest', truncate 4) over H and W only."""
    sigmas = (0, sigma, sigma) + (0,) * (x.ndim - 3)
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def _colour(rgb: tuple[float, ...], channels: int) -> np.ndarray:
    """A colour as the image's channels: RGB, or its luma for grey images."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb if channels == 3 else np.array([rgb @ LUMA])


def _grey(x: np.ndarray) -> np.ndarray:
    """[N, H, W, 1] grey level (OpenCV's RGB2GRAY weights); grey images are their own."""
    return x if x.shape[-1] == 1 else (x @ LUMA)[..., None]


def _clipped_zoom_matrix(size: int, factor: float) -> np.ndarray:
    """Hendrycks' clipped_zoom along one axis as a [size, size] matrix: take the central
    ceil(size / factor) pixels, zoom them with scipy.ndimage.zoom(order=1) (round(crop *
    factor) outputs, output i linearly interpolated at input i * (crop - 1) / (outputs - 1)),
    and keep the central `size` outputs."""
    crop = int(np.ceil(size / factor))
    outputs = int(round(crop * factor))
    at = np.arange(outputs) * ((crop - 1) / (outputs - 1) if outputs > 1 else 0.0)
    low = np.minimum(np.floor(at).astype(int), crop - 1)
    high = np.minimum(low + 1, crop - 1)
    weight = at - low
    zoom = np.zeros((outputs, crop))
    np.add.at(zoom, (np.arange(outputs), low), 1 - weight)
    np.add.at(zoom, (np.arange(outputs), high), weight)
    top, trim = (size - crop) // 2, (outputs - size) // 2
    matrix = np.zeros((size, size))
    matrix[:, top:top + crop] = zoom[trim:trim + size]
    return matrix


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of each image [N, H, W, C] by `factor`, cropped back to its size (the
    original's scipy zoom, done as two matrix products for speed)."""
    rows = _clipped_zoom_matrix(x.shape[1], factor).astype(x.dtype)
    cols = _clipped_zoom_matrix(x.shape[2], factor).astype(x.dtype)
    out = np.tensordot(rows, x, axes=([1], [1]))  # [H, N, W, C]
    out = np.tensordot(cols, out, axes=([1], [2]))  # [W, H, N, C]
    return out.transpose(2, 1, 0, 3)


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray
                 ) -> np.ndarray:
    """ImageMagick's MotionBlurImage, which Hendrycks called through Wand: a one-sided
    Gaussian kernel of width 2*ceil(radius)+1, tap i sampled i pixels along `angle` (degrees;
    offsets ceil(i*cos - 0.5), ceil(i*sin - 0.5)), edge pixels repeated outside the image."""
    width = 2 * int(np.ceil(radius)) + 1
    taps = np.arange(width)
    kernel = np.exp(-taps.astype(np.float64) ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    radians = np.deg2rad(angles)[:, None]
    dx = np.ceil(taps * np.cos(radians) - 0.5).astype(int)  # [N, width]
    dy = np.ceil(taps * np.sin(radians) - 0.5).astype(int)
    count, height, cols = x.shape[:3]
    n = np.arange(count)[:, None, None]
    rows_at = np.arange(height)[None, :, None]
    cols_at = np.arange(cols)[None, None, :]
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(width):
        rows = np.clip(rows_at + dy[:, i, None, None], 0, height - 1)
        columns = np.clip(cols_at + dx[:, i, None, None], 0, cols - 1)
        out += kernel[i] * x[n, rows, columns]
    return out


def plasma_fractal(count: int, size: int, decay: float, rng: np.random.Generator
                   ) -> np.ndarray:
    """[count, size, size] toroidal diamond-square height maps on [0, 1], as in Hendrycks'
    `plasma_fractal`: each level adds uniform noise of half-width wibble^2, wibble starting at
    100 and divided by `decay` per level. `size` must be a power of two."""
    maps = np.zeros((count, size, size))
    step, wibble = size, 100.0

    def averaged(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        # squares: each centre from the four corners around it
        around = corners + np.roll(corners, -1, axis=1)
        around = around + np.roll(around, -1, axis=2)
        maps[:, half::step, half::step] = averaged(around)
        # diamonds: each edge midpoint from the two centres and two corners beside it
        centres = maps[:, half::step, half::step]
        corners = maps[:, 0::step, 0::step]
        maps[:, 0::step, half::step] = averaged(centres + np.roll(centres, 1, axis=1)
                                                + corners + np.roll(corners, -1, axis=2))
        maps[:, half::step, 0::step] = averaged(centres + np.roll(centres, 1, axis=2)
                                                + corners + np.roll(corners, -1, axis=1))
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def _fractal_like(x: np.ndarray, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A plasma fractal for each image, cropped from the next power-of-two square."""
    height, width = x.shape[1:3]
    size = 1 << int(np.ceil(np.log2(max(height, width, 2))))
    return plasma_fractal(x.shape[0], size, decay, rng)[:, :height, :width, None]


def frost_texture(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stand-in for the frost photos Hendrycks crops from (not redistributable here): ice
    needles (sparse seeds streaked by the motion-blur kernel in three random directions) over
    a grainy diamond-square base (decay 1.2), mean brightness about 0.6, tinted pale blue as
    ice is; on [0, 1]."""
    count = x.shape[0]
    needles = np.zeros(x.shape[:3] + (1,))
    for _ in range(3):
        seeds = (rng.random(needles.shape) < 0.04).astype(np.float64)
        needles += _motion_blur(seeds, 3, 1.5, rng.uniform(0, 360, size=count))
    ice = 0.25 + 0.45 * _fractal_like(x, 1.2, rng) + 0.6 * np.clip(2 * needles, 0, 1)
    return np.clip(ice, 0, 1) * _colour((0.82, 0.9, 1.0), x.shape[-1])


def _as_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(x * 255).astype(np.uint8)


def _through_pil(x: np.ndarray, transform: Callable[[Image.Image], Image.Image]
                 ) -> np.ndarray:
    """Applies a PIL operation image by image (JPEG and BOX resampling are PIL's, as in the
    original); grey images go through PIL's 'L' mode."""
    images = _as_uint8(x)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        result = np.asarray(transform(pil))
        out[i] = result[..., None] if result.ndim == 2 else result
    return out


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """Hendrycks' anti-aliased disk: the 17x17 aliased disk, normalised, then OpenCV's 3x3
    GaussianBlur (sigma alias_blur, reflect-101 border); cropped to its nonzero support,
    which leaves the filtering unchanged."""
    span = np.arange(-8, 9)
    xx, yy = np.meshgrid(span, span)
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    taps = np.exp(-np.array([-1.0, 0.0, 1.0]) ** 2 / (2 * alias_blur ** 2))
    taps /= taps.sum()
    for axis in (0, 1):
        disk = ndimage.correlate1d(disk, taps, axis=axis, mode="mirror")
    rows, cols = np.nonzero(disk)
    reach = max(abs(rows - 8).max(), abs(cols - 8).max())
    return disk[8 - reach:9 + reach, 8 - reach:9 + reach]


# ------------------------------------------------- OpenCV steps of `spatter`

def _canny(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """OpenCV's Canny on uint8 images [N, H, W]: 3x3 Sobel (replicated border), L1 gradient
    magnitude, non-maximum suppression in four directions, hysteresis with 8-connectivity."""
    x = images.astype(np.float64)

    def sobel(derive: int, smooth: int) -> np.ndarray:  # within each image, never across
        d = ndimage.correlate1d(x, [-1.0, 0.0, 1.0], axis=derive, mode="nearest")
        return ndimage.correlate1d(d, [1.0, 2.0, 1.0], axis=smooth, mode="nearest")

    gx, gy = sobel(2, 1), sobel(1, 2)
    magnitude = np.abs(gx) + np.abs(gy)
    padded = np.pad(magnitude, ((0, 0), (1, 1), (1, 1)))
    height, width = images.shape[1:]

    def neighbour(dy: int, dx: int) -> np.ndarray:
        return padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]

    tan22, tan67 = np.tan(np.deg2rad(22.5)), np.tan(np.deg2rad(67.5))
    ax, ay = np.abs(gx), np.abs(gy)
    horizontal = ay < ax * tan22
    vertical = ay > ax * tan67
    same_sign = gx * gy > 0
    # OpenCV's comparisons: along an axis, strictly above the left/upper neighbour and at
    # least the other; along a diagonal, strictly above both
    peak = np.select(
        [horizontal, vertical, same_sign],
        [(magnitude > neighbour(0, -1)) & (magnitude >= neighbour(0, 1)),
         (magnitude > neighbour(-1, 0)) & (magnitude >= neighbour(1, 0)),
         (magnitude > neighbour(-1, -1)) & (magnitude > neighbour(1, 1))],
        (magnitude > neighbour(-1, 1)) & (magnitude > neighbour(1, -1)))
    candidate = peak & (magnitude > low)
    within_image = np.zeros((3, 3, 3), bool)
    within_image[1] = True  # connect pixels of one image, never across the batch
    labels, count = ndimage.label(candidate, structure=within_image)
    strong = np.unique(labels[candidate & (magnitude > high)])
    return np.isin(labels, strong[strong > 0])


def _equalize_hist(images: np.ndarray) -> np.ndarray:
    """OpenCV's equalizeHist on uint8 images [N, H, W]: the CDF above its first occupied bin,
    scaled to 0-255 and rounded; a constant image stays constant."""
    count = images.shape[0]
    flat = images.reshape(count, -1).astype(np.int64)
    hist = np.zeros((count, 256), np.int64)
    np.add.at(hist, (np.arange(count)[:, None], flat), 1)
    total = flat.shape[1]
    first = (hist > 0).argmax(axis=1)
    at_first = hist[np.arange(count), first]
    cdf = hist.cumsum(axis=1) - at_first[:, None]
    scale = 255.0 / np.maximum(total - at_first, 1)[:, None]
    lut = np.clip(np.round(cdf * scale), 0, 255).astype(np.uint8)
    lut[np.arange(256)[None, :] <= first[:, None]] = 0
    constant = at_first == total
    lut[constant] = first[constant, None]
    return np.take_along_axis(lut, flat, axis=1).reshape(images.shape).astype(np.uint8)


def _box3(x: np.ndarray) -> np.ndarray:
    """OpenCV's blur with a 3x3 box (reflect-101 border) over H and W."""
    return ndimage.uniform_filter(x.astype(np.float64), size=(1, 3, 3), mode="mirror")


# ------------------------------------------------------------------ noise

def gaussian_noise(x, severity, rng):
    c = [0.04, 0.06, .08, .09, .10][severity - 1]
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(x, severity, rng):
    c = [500, 250, 100, 75, 50][severity - 1]
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


def impulse_noise(x, severity, rng):
    """skimage's random_noise(mode='s&p', amount=c): each value (channel by channel) is
    replaced with probability c, by 1 or 0 with equal odds."""
    c = [.01, .02, .03, .05, .07][severity - 1]
    flipped = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    out = x.copy()
    out[flipped & salt] = 1.0
    out[flipped & ~salt] = 0.0
    return out * 255


def speckle_noise(x, severity, rng):
    c = [.06, .1, .12, .16, .2][severity - 1]
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1) * 255


# ------------------------------------------------------------------- blur

def gaussian_blur(x, severity, rng):
    c = [.4, .6, 0.7, .8, 1][severity - 1]
    return np.clip(_spatial_gaussian(x, c), 0, 1) * 255


def glass_blur(x, severity, rng):
    """Blur, locally shuffle, blur. The original's 'swap' `a[p], a[q] = a[q], a[p]` of two
    numpy views copies pixel q into p and leaves q as it was; the published CIFAR-10-C was
    made that way, so that is what we do (visiting pixels in his order, bottom-right first)."""
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2),
                                (0.4, 1, 2)][severity - 1]
    images = np.uint8(_spatial_gaussian(x, sigma) * 255)
    count, height, width = images.shape[:3]
    n = np.arange(count)
    for _ in range(iterations):
        for h in range(height - delta, delta, -1):
            for w in range(width - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=(2, count))  # high exclusive
                images[n, h, w] = images[n, h + dy, w + dx]
    return np.clip(_spatial_gaussian(images / 255.0, sigma), 0, 1) * 255


def defocus_blur(x, severity, rng):
    """Correlation with the anti-aliased disk (OpenCV filter2D, reflect-101 border)."""
    radius, alias_blur = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2),
                          (1.5, 0.1)][severity - 1]
    kernel = _disk(radius, alias_blur)[None, :, :, None]
    return np.clip(ndimage.correlate(x, kernel, mode="mirror"), 0, 1) * 255


def motion_blur(x, severity, rng):
    """ImageMagick's motion blur at a uniform angle in [-45, 45] degrees, on the uint8 image
    and back to uint8, as through Wand and PNG in the original."""
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]
    angles = rng.uniform(-45, 45, size=x.shape[0])
    return np.round(_motion_blur(_as_uint8(x).astype(np.float64), radius, sigma, angles))


def zoom_blur(x, severity, rng):
    factors = [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
               np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)][severity - 1]
    x = x.astype(np.float32)
    out = np.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


# ---------------------------------------------------------------- weather

def snow(x, severity, rng):
    """A zoomed, thresholded Gaussian snow layer, motion-blurred (ImageMagick's kernel, angle
    in [-135, -45]) and added twice (once rotated by 180 degrees) to the greyed-up image."""
    loc, scale, zoom, threshold, radius, sigma, keep = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)][severity - 1]
    x = x.astype(np.float32)
    layer = rng.normal(size=x.shape[:3] + (1,), loc=loc, scale=scale)
    layer = _clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8).astype(np.float64)
    angles = rng.uniform(-135, -45, size=x.shape[0])
    layer = np.round(_motion_blur(layer, radius, sigma, angles)) / 255
    x = keep * x + (1 - keep) * np.maximum(x, _grey(x) * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2, axes=(1, 2)), 0, 1) * 255


def frost(x, severity, rng):
    """c0 * image + c1 * frost; the frost is `frost_texture` in place of his photos."""
    image_weight, frost_weight = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4),
                                  (0.75, 0.45)][severity - 1]
    return np.clip(image_weight * x * 255 + frost_weight * frost_texture(x, rng) * 255, 0, 255)


def fog(x, severity, rng):
    strength, decay = [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    max_val = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + strength * _fractal_like(x, decay, rng)
    return np.clip(x * max_val / (max_val + strength), 0, 1) * 255


def spatter(x, severity, rng):
    """Severities 1-3: water (pale turquoise) where a blurred, thresholded Gaussian layer is
    wet, shaded by an embossed, equalised distance-to-Canny-edge map (OpenCV's steps; the exact
    Euclidean distance stands in for its 5x5 mask approximation). Severities 4-5: mud (brown)
    where the blurred wet mask exceeds 0.8."""
    loc, scale, sigma, threshold, intensity, mud = [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1)][severity - 1]
    x = x.astype(np.float32)
    liquid = _spatial_gaussian(rng.normal(size=x.shape[:3], loc=loc, scale=scale), sigma)
    liquid[liquid < threshold] = 0
    channels = x.shape[-1]
    if not mud:
        # clipped: the original's cast would wrap the (rare) values above 1
        wet = (np.clip(liquid, 0, 1) * 255).astype(np.uint8)
        edges = _canny(wet, 50, 150)
        dist = np.full(wet.shape, 20.0)
        for i in np.flatnonzero(edges.any(axis=(1, 2))):
            dist[i] = np.minimum(ndimage.distance_transform_edt(~edges[i]), 20)
        dist = _equalize_hist(_box3(dist).astype(np.uint8))
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
        dist = np.clip(ndimage.correlate(dist.astype(np.float64), emboss[None],
                                         mode="mirror"), 0, 255)
        dist = np.round(_box3(dist)).astype(np.float32)  # OpenCV blurs uint8 to uint8
        shade = wet * dist
        peak = shade.max(axis=(1, 2), keepdims=True)
        shade = np.divide(shade, peak, out=np.zeros_like(shade), where=peak > 0) * intensity
        water = _colour((175 / 255, 238 / 255, 238 / 255), channels)
        return np.clip(x + shade[..., None] * water, 0, 1) * 255
    mask = _spatial_gaussian((liquid > threshold).astype(np.float32), intensity)
    mask[mask < 0.8] = 0
    brown = _colour((63 / 255, 42 / 255, 20 / 255), channels) * mask[..., None]
    return np.clip(x * (1 - mask[..., None]) + brown, 0, 1) * 255


# ---------------------------------------------------------------- digital

def brightness(x, severity, rng):
    """skimage's RGB -> HSV, V += c (clipped), -> RGB, in closed form: hue and saturation are
    kept, so every channel scales by V'/V (a black pixel becomes grey V')."""
    c = [.05, .1, .15, .2, .3][severity - 1]
    value = x.max(axis=-1, keepdims=True)
    brighter = np.clip(value + c, 0, 1)
    ratio = np.divide(brighter, value, out=np.zeros_like(value), where=value > 0)
    return np.clip(np.where(value > 0, x * ratio, brighter), 0, 1) * 255


def saturate(x, severity, rng):
    """skimage's RGB -> HSV, S = S * c0 + c1 (clipped), -> RGB, in closed form: each channel's
    distance below V scales by S'/S; a grey pixel has hue 0 (red) in skimage, so it becomes
    (V, V(1-S'), V(1-S')). Grey images go through RGB and back to luma."""
    scale, shift = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
    grey = x.shape[-1] == 1
    rgb = np.repeat(x, 3, axis=-1) if grey else x
    value = rgb.max(axis=-1, keepdims=True)
    chroma = value - rgb.min(axis=-1, keepdims=True)
    sat = np.divide(chroma, value, out=np.zeros_like(value), where=value > 0)
    new_sat = np.clip(sat * scale + shift, 0, 1)
    ratio = np.divide(new_sat, sat, out=np.zeros_like(sat), where=sat > 0)
    coloured = value - (value - rgb) * ratio
    red_hue = np.concatenate([value, value * (1 - new_sat), value * (1 - new_sat)], axis=-1)
    out = np.clip(np.where(sat > 0, coloured, red_hue), 0, 1)
    return (_grey(out) if grey else out) * 255


def contrast(x, severity, rng):
    c = [.75, .5, .4, .3, 0.15][severity - 1]
    means = x.mean(axis=(1, 2), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def elastic_transform(x, severity, rng):
    """A random affine warp (OpenCV warpAffine: bilinear, reflect-101 border) then a smooth
    random displacement field (scipy map_coordinates, bilinear, reflect border); the sizes are
    fractions of the image side (his IMSIZE)."""
    side = min(x.shape[1:3])
    alpha, sigma, affine = [(side * 0, side * 0, side * 0.08),
                            (side * 0.05, side * 0.2, side * 0.07),
                            (side * 0.08, side * 0.06, side * 0.06),
                            (side * 0.1, side * 0.04, side * 0.05),
                            (side * 0.1, side * 0.03, side * 0.03)][severity - 1]
    x = x.astype(np.float32)
    count, height, width, channels = x.shape
    centre = np.float32([height, width]) // 2
    square = min(height, width) // 3
    # three (x, y) anchor points, as his code passes them to getAffineTransform
    source = np.float32([centre + square, [centre[0] + square, centre[1] - square],
                         centre - square])
    target = source + rng.uniform(-affine, affine, size=(count, 3, 2)).astype(np.float32)
    # the affine map taking target back to source, for sampling (inverse warping)
    design = np.concatenate([target, np.ones((count, 3, 1), np.float32)], axis=2)
    inverse = np.linalg.solve(design.astype(np.float64), source[None].astype(np.float64))
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    points = np.stack([cols, rows, np.ones_like(cols)], axis=-1).astype(np.float64)
    sampled = np.einsum("hwk,nkj->nhwj", points, inverse)  # source (x, y) of each pixel
    x = _sample(x, sampled[..., 1], sampled[..., 0], "mirror")

    def field() -> np.ndarray:
        noise = rng.uniform(-1, 1, size=(count, height, width))
        return _spatial_gaussian(noise, sigma, mode="reflect", truncate=3) * alpha

    dx, dy = field(), field()
    return np.clip(_sample(x, rows + dy, cols + dx, "reflect"), 0, 1) * 255


def _sample(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Bilinear sampling of every image [N, H, W, C] at its own [N, H, W] coordinates."""
    count, height, width, channels = x.shape
    n = np.broadcast_to(np.arange(count)[:, None, None, None], (count, height, width,
                                                                channels))
    c = np.broadcast_to(np.arange(channels), (count, height, width, channels))
    coordinates = [n, *(np.broadcast_to(a[..., None], n.shape) for a in (rows, cols)), c]
    return ndimage.map_coordinates(x, coordinates, order=1, mode=mode)


def pixelate(x, severity, rng):
    """PIL BOX down-sampling to c times the side and back, as in the original."""
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    height, width = x.shape[1:3]
    small = (int(width * c), int(height * c))
    return _through_pil(x, lambda im: im.resize(small, Image.BOX).resize((width, height),
                                                                          Image.BOX))


def jpeg_compression(x, severity, rng):
    """A PIL JPEG round trip at quality c, as in the original."""
    quality = [80, 65, 58, 50, 40][severity - 1]

    def round_trip(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(buffer)

    return _through_pil(x, round_trip)


# The 15 benchmark corruptions, in Hendrycks' order, then the 4 extra ones of CIFAR-10-C.
BENCHMARK: dict[str, Corruption] = {f.__name__: f for f in (
    gaussian_noise, shot_noise, impulse_noise, defocus_blur, glass_blur, motion_blur,
    zoom_blur, snow, frost, fog, brightness, contrast, elastic_transform, pixelate,
    jpeg_compression)}
EXTRA: dict[str, Corruption] = {f.__name__: f for f in (
    speckle_noise, gaussian_blur, spatter, saturate)}
CORRUPTIONS: dict[str, Corruption] = {**BENCHMARK, **EXTRA}
