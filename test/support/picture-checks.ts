/**
 * Checks that a picture is real, shared by the tests of pictures (test/pictures.test.ts) and
 * of the walk's HTML report: the structure of a Graphviz SVG, and rendering an SVG to PNG with
 * `rsvg-convert` (Debian librsvg2-bin) to check it is mostly paper with ink on it.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { inflateSync } from 'node:zlib';

const run = promisify(execFile);

/** Whether rsvg-convert is installed. */
export const hasRsvg = ((): boolean => {
  try {
    execFileSync('rsvg-convert', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
/** The skip reason of tests that need rsvg-convert. */
export const NEEDS_RSVG = 'needs rsvg-convert (Debian package librsvg2-bin) to render the SVG';
/** Set to a directory to keep the rendered pictures for a look (e.g. `STOPD_PICTURES=/tmp`). */
const KEEP = process.env.STOPD_PICTURES;

/** XML character references decoded. */
export function decodeXml(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|lt|gt|amp|quot|apos);/gi, (_, entity: string) => {
    if (entity.startsWith('#x') || entity.startsWith('#X')) return String.fromCodePoint(parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(Number(entity.slice(1)));
    return { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" }[entity] ?? '';
  });
}

/** The structure of a Graphviz SVG: node titles (with their text lines), edge titles, cluster titles. */
export function parseSvg(svg: string): { nodes: Map<string, string[]>; edges: string[]; clusters: string[] } {
  const nodes = new Map<string, string[]>();
  const edges: string[] = [];
  const clusters: string[] = [];
  for (const match of svg.matchAll(/<g id="[^"]*" class="(node|edge|cluster)">\n<title>([^<]*)<\/title>([\s\S]*?)<\/g>/g)) {
    const [, kind, title = '', body = ''] = match;
    const name = decodeXml(title);
    if (kind === 'node') nodes.set(name, [...body.matchAll(/<text [^>]*>([^<]*)<\/text>/g)].map((text) => decodeXml(text[1] ?? '')));
    else if (kind === 'edge') edges.push(name);
    else clusters.push(name);
  }
  return { nodes, edges, clusters };
}

export interface Png {
  readonly width: number;
  readonly height: number;
  /** RGBA, 8 bits per channel. */
  readonly pixels: Buffer;
}

/** Decodes the 8-bit RGB or RGBA non-interlaced PNG that rsvg-convert writes (PNG spec, filters 0 to 4). */
export function decodePng(bytes: Buffer): Png {
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  let offset = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const data: Buffer[] = [];
  while (offset < bytes.length) {
    const length = bytes.readUInt32BE(offset);
    const type = bytes.toString('latin1', offset + 4, offset + 8);
    const chunk = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = chunk.readUInt32BE(0);
      height = chunk.readUInt32BE(4);
      assert.equal(chunk[8], 8, 'bit depth 8');
      channels = chunk[9] === 6 ? 4 : chunk[9] === 2 ? 3 : 0;
      assert.ok(channels > 0, `colour type ${chunk[9]} is RGB or RGBA`);
      assert.equal(chunk[12], 0, 'not interlaced');
    } else if (type === 'IDAT') {
      data.push(chunk);
    }
    offset += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(data));
  const stride = width * channels;
  const out = Buffer.alloc(width * height * 4);
  let previous = Buffer.alloc(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let x = 0; x < stride; x++) {
      const left = x >= channels ? (line[x - channels] ?? 0) : 0;
      const up = previous[x] ?? 0;
      const upLeft = x >= channels ? (previous[x - channels] ?? 0) : 0;
      let predictor = 0;
      if (filter === 1) predictor = left;
      else if (filter === 2) predictor = up;
      else if (filter === 3) predictor = (left + up) >> 1;
      else if (filter === 4) {
        const p = left + up - upLeft;
        const [pa, pb, pc] = [Math.abs(p - left), Math.abs(p - up), Math.abs(p - upLeft)];
        predictor = pa <= pb && pa <= pc ? left : pb <= pc ? up : upLeft;
      }
      line[x] = ((line[x] ?? 0) + predictor) & 0xff;
    }
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) out[(y * width + x) * 4 + c] = line[x * channels + c] ?? 0;
      out[(y * width + x) * 4 + 3] = channels === 4 ? (line[x * channels + 3] ?? 0) : 255;
    }
    previous = line;
  }
  return { width, height, pixels: out };
}

/** Share of pixels within `tolerance` of an RGB colour (transparent pixels count as white paper). */
export function shareOf(png: Png, rgb: readonly [number, number, number], tolerance = 12): number {
  let count = 0;
  const total = png.width * png.height;
  for (let i = 0; i < total; i++) {
    const alpha = png.pixels[i * 4 + 3] ?? 0;
    const pixel = alpha === 0 ? [255, 255, 255] : [png.pixels[i * 4] ?? 0, png.pixels[i * 4 + 1] ?? 0, png.pixels[i * 4 + 2] ?? 0];
    if (pixel.every((value, c) => Math.abs(value - (rgb[c] ?? 0)) <= tolerance)) count++;
  }
  return count / total;
}

/** Renders an SVG with rsvg-convert and decodes the PNG; keeps it in STOPD_PICTURES when set. */
export async function rasterize(svg: string, name: string): Promise<{ png: Png; bytes: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'stopd-pictures-'));
  try {
    writeFileSync(join(dir, `${name}.svg`), svg);
    await run('rsvg-convert', ['--format', 'png', '--output', join(dir, `${name}.png`), join(dir, `${name}.svg`)], { timeout: 30_000 });
    const bytes = readFileSync(join(dir, `${name}.png`));
    if (KEEP !== undefined) {
      writeFileSync(join(KEEP, `${name}.svg`), svg);
      writeFileSync(join(KEEP, `${name}.png`), bytes);
    }
    return { png: decodePng(bytes), bytes: bytes.length };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A PNG that is a real picture: big enough, mostly paper, with ink on it. */
export function assertRealPicture(png: Png, bytes: number, minimum: { width: number; height: number }): void {
  assert.ok(png.width >= minimum.width && png.height >= minimum.height, `${png.width}x${png.height} is at least ${minimum.width}x${minimum.height}`);
  assert.ok(bytes > 5_000, `PNG of ${bytes} bytes is not trivial`);
  const white = shareOf(png, [255, 255, 255], 8);
  assert.ok(white > 0.4 && white < 0.99, `white share ${white.toFixed(3)}: paper with a drawing on it`);
  const dark = shareOf(png, [0, 0, 0], 100);
  assert.ok(dark > 0.003, `dark share ${dark.toFixed(4)}: text and lines are drawn`);
}

