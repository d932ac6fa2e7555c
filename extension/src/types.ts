/**
 * Shapes of the crowdsource API v1 the front end reads (docs/api.md; spec: snapshots,
 * deltas and `leaderboard.you` on the event stream).
 */

export interface IParticipantRef {
  id: number;
  name: string;
}

export type CompetitionStatus = 'upcoming' | 'open' | 'closed';

export interface ICompetition {
  id: number;
  title: string;
  description?: string;
  type: string;
  metric: string;
  higher_is_better: boolean;
  host?: IParticipantRef;
  opens_at: string | null;
  closes_at: string | null;
  status: CompetitionStatus;
  created_at?: string;
}

/** A team's public view on its board entry (members only; never its join code). */
export interface ITeamRef {
  id: number;
  name: string;
  members: IParticipantRef[];
}

/** One board entry, keyed by `participant.id` (a team's by its captain's id). */
export interface IEntry {
  /** null while the entry has no score yet (such entries come last). */
  rank: number | null;
  /** What the entry is called: the participant's name, or the team's. */
  name?: string;
  participant: IParticipantRef;
  team?: ITeamRef | null;
  score: number | null;
  submissions: number;
  last_submission_at: string | null;
}

/** The top of a board as a live view holds it (a `leaderboard.snapshot`'s data). */
export interface IBoard {
  board?: 'public' | 'private';
  /** The connection's version; null for a board read by REST (never compared). */
  version: number | null;
  total: number;
  limit: number;
  title?: string;
  metric: string;
  higher_is_better: boolean;
  entries: IEntry[];
}

/** `leaderboard.delta`'s data. */
export interface IDelta {
  board?: 'public' | 'private';
  version: number;
  previous: number;
  total: number;
  entries: IEntry[];
  removed: number[];
}

/** `leaderboard.you`'s data: the listener's own place. */
export interface IYou {
  version?: number;
  participant_id: number;
  rank: number | null;
  score: number | null;
  total: number;
}

/** A REST board page (`?limit=&offset=` or `?around=me`). */
export interface IBoardPage {
  competition_id?: number;
  board?: 'public' | 'private';
  metric?: string;
  higher_is_better?: boolean;
  entries: IEntry[];
  total?: number;
  limit?: number | null;
  offset?: number;
  me?: IEntry | null;
}

/** One point of the "best score over time" chart. */
export interface IHistoryPoint {
  at: string;
  participant_id: number;
  name: string;
  score: number;
}

/** A frame of the event WebSocket. */
export interface IFrame {
  type: string;
  competition_id: number | null;
  at?: string;
  data: any;
}

/** The name an entry is shown by: its team's, else its own, else its participant's. */
export function entryName(entry: IEntry): string {
  return entry.team?.name ?? entry.name ?? entry.participant.name;
}

/** Whether participant `id` owns an entry: as its participant or a member of its team. */
export function isEntryOf(entry: IEntry, id: number): boolean {
  return (
    entry.participant.id === id ||
    (entry.team?.members ?? []).some(member => member.id === id)
  );
}
