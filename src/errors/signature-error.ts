/** Why an inbound delivery was refused: missing headers, a bad signature, or a timestamp over 5 minutes off. */
export class SignatureError extends Error {
  override name = 'SignatureError';
}
