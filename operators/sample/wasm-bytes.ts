/**
 * Just enough of the WebAssembly binary format to hand-assemble a one-function module in TypeScript (no wasm
 * toolchain is installed, and none is needed for a few dozen instructions).
 */

/** Unsigned LEB128. */
export function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 (the immediate of i32.const). */
export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

/** A length-prefixed UTF-8 name. */
export const name = (s: string): number[] => [...leb(Buffer.byteLength(s)), ...Buffer.from(s)];

/** A section: id, byte length, contents. */
export const section = (id: number, bytes: readonly number[]): number[] => [
  id,
  ...leb(bytes.length),
  ...bytes,
];

export const TYPE = { i32: 0x7f, f64: 0x7c, v128: 0x7b } as const;

/**
 * A module importing one memory as env.mem (shared when `sharedMaxPages` is given, which a shared memory must
 * declare) and exporting one function `exportName` of the given parameters, no result, locals and body.
 */
export function oneFunctionModule(spec: {
  readonly exportName: string;
  readonly params: readonly number[];
  readonly locals: ReadonlyArray<readonly [count: number, type: number]>;
  readonly body: readonly number[];
  readonly sharedMaxPages?: number;
}): Uint8Array {
  const limits =
    spec.sharedMaxPages === undefined ? [0x00, ...leb(1)] : [0x03, ...leb(0), ...leb(spec.sharedMaxPages)];
  const code = [...leb(spec.locals.length), ...spec.locals.flatMap(([n, t]) => [...leb(n), t]), ...spec.body];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [1, 0x60, ...leb(spec.params.length), ...spec.params, 0]), // type: (params) -> ()
    ...section(2, [1, ...name('env'), ...name('mem'), 0x02, ...limits]), // import memory
    ...section(3, [1, 0]), // function 0 has type 0
    ...section(7, [1, ...name(spec.exportName), 0x00, 0]), // export function 0
    ...section(10, [1, ...leb(code.length), ...code]),
  ]);
}
