/** RFC 9457 problem details, with our stable `code` beside the standard members. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  requestId?: string;
  errors?: FieldError[];
  details?: Record<string, unknown>;
  [extension: string]: unknown;
}

export interface FieldError {
  path: string;
  message: string;
  /** Where the field is: body, querystring, params or headers. */
  in?: string;
}

/** An error a route throws to answer with a problem document. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
    readonly extra: Partial<Problem> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = 'HttpProblem';
  }
}
