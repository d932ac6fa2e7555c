/**
 * The API shapes the front end reads come from the generated protocol types
 * (`jlpm build:schema` writes ./generated/api.ts from /api/v1/openapi.json); this module keeps
 * only the front end's own shapes and helpers.
 */
import type { BoardSnapshot, Entry } from './generated/api';

export type {
  BoardDelta,
  BoardSnapshot,
  BoardTeam,
  BoardYou,
  Competition,
  CompetitionList,
  Entry,
  Event,
  FunctionStanding,
  LeaderboardPage,
  Named,
  ParticipantStanding,
  Round,
  Standings
} from './generated/api';

/**
 * The top of a board as a view holds it: a `leaderboard.snapshot`'s data, or a REST page's
 * top with `version` null (never compared with a connection's versions).
 */
export type Board = Omit<BoardSnapshot, 'board' | 'title' | 'version'> & {
  board?: BoardSnapshot['board'];
  title?: string;
  version: number | null;
};

/** One point of the "best score over time" chart. */
export interface IHistoryPoint {
  at: string;
  participant_id: number;
  name: string;
  score: number;
}

/** The name an entry is shown by: its team's, else its own. */
export function entryName(entry: Entry): string {
  return entry.team?.name ?? entry.name;
}

/** Whether participant `id` owns an entry: as its participant or a member of its team. */
export function isEntryOf(entry: Entry, id: number): boolean {
  return (
    entry.participant.id === id ||
    (entry.team?.members ?? []).some(member => member.id === id)
  );
}
