from types import CodeType

def same_site(
    exc: BaseException, code: CodeType, lasti: int, type: type[BaseException], /
) -> bool: ...
