from typing import Literal, TypeVar, overload

_T = TypeVar("_T", bound=tuple[object, ...])

@overload
def read_fd_links(dir_fd: int) -> list[tuple[int, str]]: ...
@overload
def read_fd_links(
    dir_fd: int, tagged: Literal[True]
) -> list[tuple[int, str, int, int | None, int | None]]: ...
def parse_inet_dump(
    data: bytes,
    wanted: object,
    entry_type: type[_T],
    kind4: object,
    kind6: object,
    states: tuple[object, ...],
) -> dict[int, _T]: ...
