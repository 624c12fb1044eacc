import {expect} from 'chai'

import {type Frame, FrameDecoder, FrameType, MAX_FRAME, encodeFrame, encodeJsonFrame, framesOf} from '../../src/daemon/protocol.js'

function decode(chunks: Buffer[]): Promise<Frame[]> {
  return new Promise((resolve, reject) => {
    const decoder = new FrameDecoder()
    const frames: Frame[] = []
    decoder.on('data', (frame: Frame) => frames.push(frame))
    decoder.on('end', () => resolve(frames))
    decoder.on('error', reject)
    for (const chunk of chunks) decoder.write(chunk)
    decoder.end()
  })
}

describe('exec stream frames', () => {
  it('round-trips frames split at every byte boundary', async () => {
    const binary = Buffer.from([0, 255, 1, 10, 13])
    const wire = Buffer.concat([encodeFrame(FrameType.stdout, binary), encodeJsonFrame(FrameType.exit, {exit_code: 7, signal: null}), encodeFrame(FrameType.stdinEof)])
    const oneByteChunks = [...wire].map((byte) => Buffer.from([byte]))
    const frames = await decode(oneByteChunks)
    expect(frames.map((frame) => frame.type)).to.deep.equal([FrameType.stdout, FrameType.exit, FrameType.stdinEof])
    expect(frames[0]!.payload).to.deep.equal(binary)
    expect(JSON.parse(frames[1]!.payload.toString())).to.deep.equal({exit_code: 7, signal: null})
    expect(frames[2]!.payload.length).to.equal(0)
  })

  it('splits large output into frames of at most 1 MiB', () => {
    const data = Buffer.alloc(MAX_FRAME * 2 + 5, 7)
    const frames = [...framesOf(FrameType.stdout, data)]
    expect(frames.map((frame) => frame.length - 5)).to.deep.equal([MAX_FRAME, MAX_FRAME, 5])
  })

  it('refuses a frame announcing more than 1 MiB', async () => {
    const header = Buffer.from([1, 0x7f, 0xff, 0xff, 0xff])
    const error = await decode([header]).catch((error_: unknown) => error_)
    expect((error as Error).message).to.match(/exceeds the 1048576-byte limit/)
  })
})
