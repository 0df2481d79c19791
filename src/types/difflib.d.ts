/** The part of the `difflib` package (a port of Python's difflib) that fusegen uses. */
declare module 'difflib' {
  export class SequenceMatcher<T = string> {
    constructor(isjunk: ((x: T) => boolean) | null, a: string | T[], b: string | T[], autojunk?: boolean);
    ratio(): number;
  }
}
