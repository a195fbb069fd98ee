/**
 * White space as RFC 1413 section 6 note 1 means it: "space and tab characters", allowed
 * anywhere except within a token. Nothing else counts (String#trim would also eat NBSP,
 * vertical tab and the like, which are not white space on this wire).
 */

const SPACE = 0x20;
const TAB = 0x09;

/** True for a space or a tab. */
export function isBlank(code: number): boolean {
  return code === SPACE || code === TAB;
}

/** Strips spaces and tabs at both ends, in linear time. */
export function trimBlanks(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isBlank(text.charCodeAt(start))) start++;
  while (end > start && isBlank(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

/** Index of the first space or tab in `text`, or -1. */
export function indexOfBlank(text: string): number {
  for (let i = 0; i < text.length; i++) {
    if (isBlank(text.charCodeAt(i))) return i;
  }
  return -1;
}
