/**
 * The scheduler's view of a paged KV cache (vLLM's block manager, without prefix sharing): which
 * of the engine's blocks are free. A request takes blocks as its positions grow and gives them
 * all back when it leaves or is preempted. Block 0 is never handed out: the rows a step carries
 * idle write their throwaway token there.
 */
export class BlockPool {
  private readonly free: number[];

  constructor(
    readonly blocks: number,
    readonly blockSize: number,
  ) {
    if (!(Number.isInteger(blocks) && blocks >= 2 && Number.isInteger(blockSize) && blockSize >= 1)) throw new RangeError(`a block pool needs at least 2 blocks of at least 1 position, not ${blocks} of ${blockSize}`);
    // Popped from the end: the lowest ids go first.
    this.free = Array.from({ length: blocks - 1 }, (_, i) => blocks - 1 - i);
  }

  /** The block idle rows write into. */
  static readonly SCRATCH = 0;

  /** Blocks a request may ever hold (all but the scratch block). */
  get usable(): number {
    return this.blocks - 1;
  }

  get freeBlocks(): number {
    return this.free.length;
  }

  /** Blocks that hold `positions` positions. */
  blocksFor(positions: number): number {
    return Math.ceil(positions / this.blockSize);
  }

  /** Grows `table` to cover `positions` positions; false (and `table` unchanged) when the pool is short. */
  cover(table: number[], positions: number): boolean {
    const need = this.blocksFor(positions) - table.length;
    if (need <= 0) return true;
    if (need > this.free.length) return false;
    for (let i = 0; i < need; i++) table.push(this.free.pop()!);
    return true;
  }

  /** Gives every block of `table` back and empties it. */
  release(table: number[]): void {
    for (const b of table.splice(0)) this.free.push(b);
  }
}
