// lib/cli/errors.ts: which errors are the user's (exit 1 or 2, one line) and which are bugs (70).
import { statSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { exitFor, RunError, UsageError } from '../../lib/cli/errors.js'
import { BirnnError, BirnnRangeError } from '../../lib/errors.js'

function systemError(): unknown {
  try {
    statSync('/no/such/birnn/file')
  } catch (error) {
    return error
  }
}

describe('exitFor', () => {
  it.each([
    ['a command-line error', new UsageError('bad'), { code: 2, message: 'bad', internal: false }],
    [
      'a failed run',
      new RunError('input x: no such file'),
      { code: 1, message: 'input x: no such file', internal: false },
    ],
    [
      'a library error, by its code',
      new BirnnRangeError('ERR_BIRNN_SHAPE', 'h0: expected shape [1], received [2]'),
      { code: 1, message: 'h0: expected shape [1], received [2]', internal: false },
    ],
    ['a library Error', new BirnnError('ERR_BIRNN_NATIVE', 'out of memory'), { code: 1, internal: false }],
    [
      'a failed system call, in plain words',
      systemError(),
      { code: 1, message: '/no/such/birnn/file: no such file', internal: false },
    ],
    [
      'an array too large for the process',
      (() => {
        try {
          new Float32Array(2 ** 40)
        } catch (error) {
          return error
        }
      })(),
      {
        code: 1,
        message: expect.stringMatching(
          /^out of memory: an array of this run is too large \(.*\); use smaller batches \(score's --batch-size\) or shorter sequences$/,
        ),
        internal: false,
      },
    ],
    ['a RangeError of another kind (a bug)', new RangeError('offset is out of bounds'), { code: 70, internal: true }],
    ['a plain Error (a bug)', new Error('boom'), { code: 70, message: 'internal error: boom', internal: true }],
    ['a TypeError (a bug)', new TypeError('x is undefined'), { code: 70, internal: true }],
    ['an error with a foreign code', Object.assign(new Error('e'), { code: 'ERR_OTHER' }), { code: 70 }],
    ['a thrown string', 'oops', { code: 70, message: 'internal error: oops' }],
  ])('%s', (_label, error, expected) => {
    expect(exitFor(error)).toMatchObject(expected)
  })
})
