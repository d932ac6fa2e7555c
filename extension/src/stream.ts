/**
 * The server's event WebSocket, reconnected with exponential backoff after any close.
 * Nothing here polls: a new connection is tried only after the last one closed. The one
 * event-following implementation of the front end (panel, page and widget).
 */
import { Event } from './types';

export interface IStreamHandlers {
  /** A `hello` arrived: a (re)connection; the server sends a snapshot next. */
  onHello(frame: Event): void;
  onFrame(frame: Event): void;
  /** The connection closed (or never opened); a retry is due in `retryMs`. */
  onDown(retryMs: number, wasOpen: boolean): void;
}

/** What a WebSocket constructor must give (the browser's, or a test's fake). */
export type SocketFactory = (url: string) => WebSocket;

export const MIN_BACKOFF_MS = 500;
export const MAX_BACKOFF_MS = 15000;

/** The delay before retry number `attempt` (0-based), jittered by ±20%. */
export function backoffMs(attempt: number, random = Math.random()): number {
  const base = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** attempt);
  return Math.round(base * (0.8 + 0.4 * random));
}

export class EventStream {
  private socket: WebSocket | null = null;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = true;

  constructor(
    readonly url: string,
    private readonly handlers: IStreamHandlers,
    private readonly open: SocketFactory = url => new WebSocket(url)
  ) {}

  get connected(): boolean {
    return this.socket?.readyState === 1;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimer();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onclose = null;
      socket.onmessage = null;
      socket.onerror = null;
      socket.close();
    }
  }

  /** Send a JSON frame if connected; false if not (the next hello resyncs anyway). */
  send(frame: object): boolean {
    if (!this.connected) {
      return false;
    }
    this.socket!.send(JSON.stringify(frame));
    return true;
  }

  /** Skip the wait and try now (e.g. the user pressed "Retry"). */
  retryNow(): void {
    if (this.stopped || this.socket !== null) {
      return;
    }
    this.clearTimer();
    this.attempt = 0;
    this.connect();
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private connect(): void {
    this.timer = null;
    let socket: WebSocket;
    try {
      socket = this.open(this.url);
    } catch {
      this.scheduleRetry(false);
      return;
    }
    this.socket = socket;
    let wasOpen = false;
    socket.onopen = () => {
      wasOpen = true;
      this.attempt = 0;
    };
    socket.onmessage = (message: MessageEvent) => {
      let frame: Event;
      try {
        frame = JSON.parse(String(message.data));
      } catch {
        return;
      }
      if (frame.type === 'hello') {
        this.handlers.onHello(frame);
      } else {
        this.handlers.onFrame(frame);
      }
    };
    socket.onclose = () => {
      if (this.socket === socket) {
        this.socket = null;
        this.scheduleRetry(wasOpen);
      }
    };
  }

  private scheduleRetry(wasOpen: boolean): void {
    if (this.stopped) {
      return;
    }
    const delay = backoffMs(this.attempt);
    this.attempt += 1;
    this.handlers.onDown(delay, wasOpen);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
