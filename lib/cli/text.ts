// Numbers in words, the same way in every message.

/** `1 sequence`, `2,048 sequences`. */
export const plural = (count: number, noun: string): string =>
  `${count.toLocaleString('en-US')} ${noun}${count === 1 ? '' : 's'}`
