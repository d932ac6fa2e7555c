/**
 * The server's event WebSocket, reconnected with exponential backoff.
 * Nothing here polls: a new connection is tried only after the last one closed.
 */
import { IServerEvent } from './types';

export interface IEventStreamHandlers {
  /** A `hello` arrived: the caller resynchronises by REST. */
  onHello(): void;
  onEvent(event: IServerEvent): void;
  /** The connection closed (or never opened); a retry is due in `retryMs`. */
  onDown(retryMs: number, wasOpen: boolean): void;
}

export const MIN_BACKOFF_MS = 500;
export const MAX_BACKOFF_MS = 15000;

export class EventStream {
  private socket: WebSocket | null = null;
  private attempt = 0;
  private timer: number | null = null;
  private stopped = true;

  constructor(
    readonly url: string,
    private readonly handlers: IEventStreamHandlers
  ) {}

  get connected(): boolean {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.onclose = null;
      socket.onmessage = null;
      socket.onerror = null;
      socket.close();
    }
  }

  /** Skip the wait and try now (e.g. the user pressed "Retry"). */
  retryNow(): void {
    if (this.stopped || this.connected) {
      return;
    }
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
    this.attempt = 0;
    this.connect();
  }

  private connect(): void {
    this.timer = null;
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.url);
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
      let event: IServerEvent;
      try {
        event = JSON.parse(String(message.data));
      } catch {
        return;
      }
      if (event.type === 'hello') {
        this.handlers.onHello();
      } else {
        this.handlers.onEvent(event);
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
    const base = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.attempt += 1;
    this.handlers.onDown(delay, wasOpen);
    this.timer = window.setTimeout(() => this.connect(), delay);
  }
}
