import { writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import * as vega from 'vega';
import * as vl from 'vega-lite';

export interface Row {
  readonly measure: string;
  readonly value: string;
  readonly target: string;
  readonly verdict: string;
}

export function markdownTable(rows: readonly Row[]): string {
  const lines = ['| measure | value | target | |', '| --- | ---: | --- | --- |'];
  for (const r of rows) lines.push(`| ${r.measure} | ${r.value} | ${r.target} | ${r.verdict} |`);
  return lines.join('\n');
}

export function textTable(rows: readonly Row[]): string {
  const all = [['measure', 'value', 'target', ''], ...rows.map((r) => [r.measure, r.value, r.target, r.verdict])];
  const widths = all[0]!.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  return all.map((r) => r.map((cell, c) => (c === 1 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ')).join('\n');
}

/** Throughput against maxMessages, one line per transport, as a PNG. */
export async function drawChart(
  points: ReadonlyArray<{ transport: string; maxMessages: number; tasksPerSecond: number }>,
  file: string,
): Promise<void> {
  const spec = vl.compile({
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: 'Sheaf end to end: tasks per second against batch size',
    width: 560,
    height: 320,
    data: { values: points.map((p) => ({ ...p })) },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'maxMessages', type: 'quantitative', scale: { type: 'log' }, title: 'batch.maxMessages' },
      y: { field: 'tasksPerSecond', type: 'quantitative', scale: { type: 'log' }, title: 'tasks per second (dispatch to result)' },
      color: { field: 'transport', type: 'nominal', title: 'transport' },
    },
    config: { background: 'white' },
  }).spec;
  const svg = await new vega.View(vega.parse(spec), { renderer: 'none' }).toSVG();
  await writeFile(file.replace(/\.png$/, '.svg'), svg);
  await sharp(Buffer.from(svg), { density: 144 }).png().toFile(file);
}
