import type { FastifyRequest } from 'fastify';
import { HttpProblem } from '../errors/http-problem.js';
import { principalOf } from './auth.js';

/**
 * Concurrency caps of one web process: open event streams (SSE and WebSocket together) and image
 * uploads in progress, per API key and in all, and requests waiting on `Prefer: wait`. A slot is
 * taken before the work starts and given back exactly once when it ends.
 */
export interface Slots {
  /** A release function, or undefined when every slot is taken. */
  tryAcquire(): (() => void) | undefined;
  readonly inUse: number;
}

export function createSlots(max: number): Slots {
  let inUse = 0;
  return {
    tryAcquire() {
      if (inUse >= max) return undefined;
      inUse++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        inUse--;
      };
    },
    get inUse() {
      return inUse;
    },
  };
}

/** Slots per API key within slots per process. */
export interface KeyCaps {
  /** A release function, or which cap is full. */
  acquire(keyId: string): { release: () => void } | { full: 'key' | 'process'; limit: number };
}

export function createKeyCaps(limits: { perKey: number; perProcess: number }): KeyCaps {
  const total = createSlots(limits.perProcess);
  const byKey = new Map<string, number>();
  return {
    acquire(keyId) {
      const open = byKey.get(keyId) ?? 0;
      if (open >= limits.perKey) return { full: 'key', limit: limits.perKey };
      const releaseTotal = total.tryAcquire();
      if (!releaseTotal) return { full: 'process', limit: limits.perProcess };
      byKey.set(keyId, open + 1);
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          releaseTotal();
          const left = (byKey.get(keyId) ?? 1) - 1;
          if (left === 0) byKey.delete(keyId);
          else byKey.set(keyId, left);
        },
      };
    },
  };
}

/**
 * Takes a stream slot for the request's key, released when its connection closes; a 429 problem
 * when a cap is full. Call it before the stream opens (for WebSocket: before the upgrade).
 */
export function takeStreamSlot(caps: KeyCaps, request: FastifyRequest): void {
  const slot = caps.acquire(principalOf(request).id);
  if ('full' in slot) {
    throw new HttpProblem(
      429,
      'too_many_streams',
      slot.full === 'key'
        ? `This API key already has ${slot.limit} open event streams (STREAMS_PER_KEY); close one first`
        : `This server already holds ${slot.limit} open event streams (STREAMS_PER_PROCESS); retry later`,
      { details: { limit: slot.limit, per: slot.full } },
      { 'Retry-After': '5' },
    );
  }
  // The socket, not the response: it closes whether the stream ended, failed or was never upgraded.
  request.raw.socket.once('close', slot.release);
}

/**
 * Takes an upload slot for the request's key, before its body is read; a 429 problem when a cap
 * is full. Returns the release, to call once the upload is read and staged (or refused).
 */
export function takeUploadSlot(caps: KeyCaps, request: FastifyRequest): () => void {
  const slot = caps.acquire(principalOf(request).id);
  if ('full' in slot) {
    throw new HttpProblem(
      429,
      'too_many_uploads',
      slot.full === 'key'
        ? `This API key already has ${slot.limit} image uploads in progress (IMAGE_UPLOADS_PER_KEY); retry once one has finished`
        : `This server is already receiving ${slot.limit} image uploads (IMAGE_UPLOADS_PER_PROCESS); retry later`,
      { details: { limit: slot.limit, per: slot.full } },
      { 'Retry-After': '1' },
    );
  }
  return slot.release;
}
